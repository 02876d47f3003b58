"""The answer kept on the native grid: clicked components, and the partial remap equal to the full one."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.bbox import mask_bbox
from nfbench.models.blocks.grids import GridMap
from nfbench.models.blocks.native_answer import NativeAnswer, clicked_components
from tests.models.answers import assert_diff_answer, kept_components


def _blobs(shape, rng, count, radius) -> np.ndarray:
    mask = np.zeros(shape, bool)
    grid = np.indices(shape)
    for _ in range(count):
        centre = [rng.integers(0, n) for n in shape]
        r = rng.uniform(1, radius, 3)
        mask |= sum(((g - c) / q) ** 2 for g, c, q in zip(grid, centre, r)) <= 1
    return mask


def test_clicked_components_are_the_whole_components_however_far_they_reach():
    shape = (90, 70, 12)
    raw = np.zeros(shape, bool)
    raw[5, 5:65, 6] = True          # a thin line across most of the grid: the box must grow
    raw[5:85, 64, 2:10] = True      # joined to a plane at its far end
    raw[40:43, 30:33, 0:3] = True   # a small blob, apart
    raw[60, 20, 11] = True          # a single voxel at the border
    calls = []

    def mask_of(box):
        calls.append(box)
        return raw[box]

    seeds = [(5, 10, 6), (84, 64, 9), (41, 31, 1), (60, 20, 11), (0, 0, 0)]  # two in one component; background
    found = clicked_components(mask_of, shape, seeds)
    assert len(found) == 3
    expected = kept_components(raw, seeds, True)
    assembled = np.zeros(shape, bool)
    for box, mask in found:
        assert mask_bbox(mask) == tuple(slice(0, s.stop - s.start) for s in box)  # cropped to the component
        assembled[box] |= mask
    np.testing.assert_array_equal(assembled, expected)
    assert max(np.prod([s.stop - s.start for s in box]) for box in calls[2:]) < raw.size  # small ones stay small


@pytest.mark.parametrize("codes", ["RSA", "SRA", "LPS"])
@pytest.mark.parametrize("keep", [False, True], ids=["whole", "keep_clicked"])
@pytest.mark.parametrize("honour", [False, True], ids=["", "honour_clicks"])
def test_partial_remap_equals_the_full_one_over_a_sequence_of_changes(codes, keep, honour):
    """With ``honour_clicks`` the seeds fall anywhere, background included, and are lesion in the answer."""
    rng = np.random.default_rng(len(codes) * 7 + keep + 3 * honour)
    native_shape = (47, 9, 61)
    # anisotropic and both ways: coarser in-plane along two axes, finer along the thick one
    grid = GridMap.build(native_shape, (0.7, 6.0, 0.9), codes=codes, spacing=(1.3, 1.1, 4.5))
    raw = _blobs(grid.shape, rng, 12, 5)
    answer = NativeAnswer(grid, native_shape, keep_clicked=keep, honour_clicks=honour)
    answer.reset(mask_bbox(raw))
    before = np.zeros(native_shape, bool)
    seeds: list = []
    for step in range(12):
        if step == 6:  # a new object: the raw mask is back to what it was at the reset
            raw = _blobs(grid.shape, np.random.default_rng(99), 12, 5)
            answer.reset(mask_bbox(raw))
            before[...] = False
            seeds = []
        else:  # a local change: a new blob or a hole inside a random box, as a click's windows
            lo = [int(rng.integers(0, n)) for n in grid.shape]
            box = tuple(slice(a, min(a + int(rng.integers(3, 15)), n)) for a, n in zip(lo, grid.shape))
            raw[box] = _blobs(tuple(s.stop - s.start for s in box), rng, 2, 4) if step % 3 else False
            answer.changed([tuple(slice(s.start + 2, s.stop + 2) for s in box)], origin=(2, 2, 2))
            on = np.argwhere(np.ones_like(raw) if honour else raw)
            if len(on) and step % 2:
                seeds.append(tuple(on[rng.integers(len(on))]))
        prediction = answer.update(lambda b, raw=raw: raw[b], seeds)
        honoured = raw.copy()
        if honour and seeds:
            honoured[tuple(np.array(seeds).T)] = True
        full = grid.to_native(kept_components(honoured, seeds, keep))
        assert_diff_answer(prediction, full, before)
        np.testing.assert_array_equal(answer.native, full)
        before = full
    assert keep or before.any()
    if honour:  # the last object's seeds: each one's voxel is in the answer, background or not
        assert all(answer.model[seed] for seed in seeds)


def test_kept_components_far_from_a_change_are_not_labelled_again():
    grid = GridMap.build((40, 40, 40), (1.0, 1.0, 1.0))
    raw = np.zeros(grid.shape, bool)
    raw[2:6, 2:6, 2:6] = raw[30:35, 30:35, 30:35] = True
    asked = []

    def mask_of(box):
        asked.append(box)
        return raw[box]

    answer = NativeAnswer(grid, grid.shape, keep_clicked=True)
    answer.reset(mask_bbox(raw))
    first = answer.update(mask_of, [(3, 3, 3), (32, 32, 32)])
    assert first.box == (slice(2, 35),) * 3 and np.count_nonzero(first.mask) == 64 + 125
    asked.clear()
    raw[15:18, 15:18, 15:18] = True  # a new blob, clicked by nobody
    answer.changed([(slice(14, 19),) * 3])
    assert answer.update(mask_of, [(3, 3, 3), (32, 32, 32)]).mask.size == 0 and asked == []
    raw[6, 3, 3] = True  # grows the first component: only it is labelled again
    answer.changed([(slice(6, 7), slice(3, 4), slice(3, 4))])
    grown = answer.update(mask_of, [(3, 3, 3), (32, 32, 32)])
    assert grown.box == (slice(6, 7), slice(3, 4), slice(3, 4)) and grown.mask.all()
    assert all(box[0].start < 16 for box in asked)
