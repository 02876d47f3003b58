"""Click encodings on crops, against small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.models.blocks.encodings import ball, balls, click_channels, distance_to_points, exp_distance, gaussian
from nfbench.types import Click


def test_disk_and_ball_by_hand():
    assert np.argwhere(ball((5, 5), (2, 2), 1.0)).tolist() == [[1, 2], [2, 1], [2, 2], [2, 3], [3, 2]]
    # 2 mm with spacing (1, 2): di² + (2 dj)² ≤ 4 → dj = 0: di in -2..2; dj = ±1: di = 0.
    disk = ball((5, 5), (2, 2), 2.0, spacing=(1.0, 2.0))
    assert disk.sum() == 7 and disk[:, 2].all() and disk[2, [1, 3]].all()
    assert np.argwhere(ball((3, 3, 3), (-1, 1, 1), 1.0)).tolist() == [[0, 1, 1]]  # a centre outside the crop
    assert balls((4, 4, 4), [(0, 0, 0), (3, 3, 3)], 0.5).sum() == 2


def test_distance_maps_by_hand():
    spacing = (1.0, 2.0, 3.0)
    d = distance_to_points((3, 3, 3), [(0, 0, 0)], spacing)
    assert d[1, 1, 1] == pytest.approx(np.sqrt(1 + 4 + 9)) and d[0, 0, 2] == pytest.approx(6.0)
    two = distance_to_points((1, 1, 7), [(0, 0, 0), (0, 0, 6)])
    np.testing.assert_allclose(two[0, 0], [0, 1, 2, 3, 2, 1, 0])
    e = exp_distance((3, 3, 3), [(0, 0, 0)], scale=2.0, spacing=spacing)
    assert e[0, 0, 0] == 1.0 and e[1, 1, 1] == pytest.approx(np.exp(-np.sqrt(14) / 2))
    g = gaussian((3, 4), [(1, 1)], sigma=1.0, spacing=(1.0, 3.0))
    assert g[1, 1] == 1.0 and g[0, 1] == pytest.approx(np.exp(-0.5)) and g[1, 2] == pytest.approx(np.exp(-4.5))
    assert g.dtype == np.float32 and not gaussian((3, 3), [], 1.0).any()
    with pytest.raises(ValueError, match="outside the array"):
        distance_to_points((3, 3), [(3, 0)])


def test_click_channels_split_by_sign_and_keep_to_the_crop():
    box = (slice(10, 15), slice(0, 3), slice(5, 10))
    clicks = [Click((12, 1, 7), True), Click((10, 0, 5), False), Click((20, 0, 0), True)]
    maps = click_channels(box, clicks, lambda shape, points: balls(shape, points, 0.5))
    assert maps.shape == (2, 5, 3, 5) and maps.dtype == np.float32
    assert np.argwhere(maps[0]).tolist() == [[2, 1, 2]] and np.argwhere(maps[1]).tolist() == [[0, 0, 0]]
