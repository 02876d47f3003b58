from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nfbench.components import connected_components


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 5, 3), (3, 1, 1), (5, 1, 3), (4, 4, 4)])
def test_matches_scipy_on_thin_crops(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(50):
        mask = rng.random(shape) < 0.5
        labels, n = connected_components(mask, connectivity=26)
        expected, n_expected = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        assert labels.shape == shape and n == n_expected
        # Same partition of the voxels (label numbers may differ).
        pairs = set(zip(labels[mask].tolist(), expected[mask].tolist()))
        assert len(pairs) == n
