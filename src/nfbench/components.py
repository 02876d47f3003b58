"""Connected components through cc3d, safe on crops with singleton axes."""

from __future__ import annotations

import cc3d
import numpy as np

__all__ = ["connected_components"]


def connected_components(mask: np.ndarray, *, connectivity: int = 26) -> tuple[np.ndarray, int]:
    """Label the ``connectivity``-connected components of a 3D mask; returns (labels, count).

    cc3d 3.x/4.x under-allocates its union-find table for some arrays with a singleton axis (for
    example shape (1, 1, 3) holding [1, 0, 1] raises "Label 2 cannot be mapped to union-find
    array of length 2"). Such arrays are padded to two voxels on those axes with background, which
    changes no component, and the labels are cropped back.
    """
    if all(n >= 2 for n in mask.shape) or mask.size == 0:
        labels, n = cc3d.connected_components(mask, connectivity=connectivity, return_N=True)
        return labels, int(n)
    padded = np.zeros(tuple(max(n, 2) for n in mask.shape), dtype=mask.dtype)
    inner = tuple(slice(0, n) for n in mask.shape)
    padded[inner] = mask
    labels, n = cc3d.connected_components(padded, connectivity=connectivity, return_N=True)
    return labels[inner], int(n)
