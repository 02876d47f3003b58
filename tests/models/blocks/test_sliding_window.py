"""Sliding-window inference: coverage, exact reconstruction by linear predictors, padding, the window cache."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.models.blocks.sliding_window import (
    WindowCache,
    gaussian_weights,
    sliding_window,
    window_boxes,
    window_starts,
)


@pytest.mark.parametrize(("size", "patch", "step"), [(10, 4, 2), (11, 4, 2), (17, 5, 3), (4, 4, 2), (100, 32, 16)])
def test_window_starts_cover_the_axis(size, patch, step):
    starts = window_starts(size, patch, step)
    assert starts[0] == 0 and starts[-1] + patch == size
    assert all(0 < b - a <= step for a, b in zip(starts, starts[1:]))
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + patch] = True
    assert covered.all()


def test_window_boxes_cover_the_volume():
    shape, patch = (9, 7, 12), (4, 4, 5)
    count = np.zeros(shape, int)
    boxes = list(window_boxes(shape, patch, 0.5))
    for box in boxes:
        assert tuple(s.stop - s.start for s in box) == patch
        count[box] += 1
    assert count.min() >= 1 and len(boxes) == len(window_starts(9, 4, 2)) * len(window_starts(7, 4, 2)) * len(window_starts(12, 5, 2))


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_linear_predictors_reconstruct_the_input(blend):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 100, size=(1, 13, 9, 11)).astype(np.float32)
    same = sliding_window(image, lambda p: p, (6, 4, 5), overlap=0.5, blend=blend)
    assert same.shape == image.shape and same.dtype == np.float32
    np.testing.assert_allclose(same, image, rtol=1e-6)
    two = sliding_window(image, lambda p: np.concatenate([2 * p + 1, -p]), (6, 4, 5), overlap=0.25, blend=blend)
    np.testing.assert_allclose(two, np.concatenate([2 * image + 1, -image]), rtol=1e-6, atol=1e-4)


def test_patch_larger_than_the_volume_is_padded():
    image = np.arange(3 * 2 * 5, dtype=np.float32).reshape(3, 2, 5)
    seen = []

    def predict(patch):
        seen.append(patch.shape)
        return patch * 10

    out = sliding_window(image, predict, (8, 4, 4), pad_value=-1.0)
    assert seen == [(8, 4, 4), (8, 4, 4)]  # padded to the patch in the first two axes; two windows in the last
    np.testing.assert_allclose(out, image * 10, rtol=1e-6)


def test_gaussian_weights_peak_in_the_centre_and_never_vanish():
    w = gaussian_weights((5, 6, 7))
    assert w.shape == (5, 6, 7) and w.max() == pytest.approx(1.0) and w.min() > 0
    assert w[2, 2, 3] == w.max() and w[2, 2, 3] == w[2, 3, 3]  # 6 has two central voxels


def test_tensors_come_back_as_numpy():
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(2).normal(size=(2, 8, 8, 8)).astype(np.float32)
    conv = torch.nn.Conv3d(2, 2, kernel_size=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1, 1))
        out = sliding_window(image, lambda p: conv(torch.from_numpy(p)[None])[0], (4, 4, 4))
    np.testing.assert_allclose(out, image, rtol=1e-5, atol=1e-6)


def _full_pass(array, predict, patch, overlap):
    """Reference: every window run, weighted Gaussian average, written out independently of the cache."""
    weights = gaussian_weights(patch)
    out, total = None, np.zeros(array.shape[1:], np.float32)
    for box in window_boxes(array.shape[1:], patch, overlap):
        answer = predict(array[(slice(None), *box)][None])[0]
        out = np.zeros(answer.shape[:1] + array.shape[1:], np.float32) if out is None else out
        out[(slice(None), *box)] += answer * weights
        total[box] += weights
    return out / total


def test_window_cache_re_runs_only_changed_windows_and_equals_a_full_pass():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)

    def predict(batch):  # (B, 2, *patch) -> (B, 2, *patch): a 3x3x3 conv, tanh, minus the window's mean
        conv = sum(ndimage.correlate(batch[:, c], kernel[c][None], mode="constant") for c in range(2))
        act = np.tanh(conv)
        return np.stack([act - act.mean(axis=(1, 2, 3), keepdims=True), act**2], axis=1)

    patch, overlap = (8, 8, 6), 0.25
    array = rng.normal(size=(2, 40, 36, 30)).astype(np.float32)
    cache = WindowCache(array.shape[1:], patch, overlap=overlap)
    n = len(cache.boxes)
    assert n == 7 * 6 * 7
    out = cache.infer(lambda box: array[(slice(None), *box)], predict, batch_size=4)
    np.testing.assert_allclose(out, _full_pass(array, predict, patch, overlap), atol=1e-5)
    assert cache.windows_run == n
    start = cache.snapshot()
    runs = []
    for centre in [(1, 1, 1), (20, 18, 15), (38, 35, 29), (20, 19, 15)]:
        box = tuple(slice(max(c - 1, 0), c + 2) for c in centre)
        array[(1, *box)] = rng.normal(size=array[(1, *box)].shape)  # a local change of one channel
        before = cache.windows_run
        out = cache.infer(lambda b: array[(slice(None), *b)], predict, [box], batch_size=3)
        runs.append(cache.windows_run - before)
        assert np.abs(out - _full_pass(array, predict, patch, overlap)).max() <= 1e-5
    assert all(1 <= r <= 8 for r in runs) and runs[0] == 1  # a corner touches one window, the middle ≤ 2x2x2
    previous = out.copy()
    boxes = [(slice(0, 2), slice(0, 2), slice(0, 2)), (slice(38, 40), slice(34, 36), slice(28, 30))]
    for box in boxes:  # two far-apart changes in one call
        array[(0, *box)] += 1.0
    before = cache.windows_run
    out = cache.infer(lambda b: array[(slice(None), *b)], predict, boxes, batch_size=5)
    assert cache.windows_run - before == 2
    assert np.abs(out - _full_pass(array, predict, patch, overlap)).max() <= 1e-5
    # the blended boxes: the two corner windows, and outside them the answer is the previous one exactly
    assert cache.blended == [tuple(slice(s.start, s.start + p) for s, p in zip(cache.boxes[i], patch))
                             for i in (0, n - 1)]
    outside = np.ones(array.shape[1:], bool)
    for box in cache.blended:
        outside[box] = False
    np.testing.assert_array_equal(out[:, outside], previous[:, outside])
    assert not np.array_equal(out[(slice(None), *cache.blended[0])], previous[(slice(None), *cache.blended[0])])
    cache.restore(start)
    assert cache.blended == [tuple(slice(0, s) for s in array.shape[1:])]
    before = cache.windows_run
    again = cache.infer(lambda b: pytest.fail("nothing to run"), predict)
    assert cache.windows_run == before and cache.blended == []
    np.testing.assert_array_equal(again, start[1])


def test_window_cache_refuses_a_grid_smaller_than_the_patch_and_a_bad_answer():
    with pytest.raises(ValueError, match="at least the patch size"):
        WindowCache((4, 8, 8), (6, 4, 4))
    cache = WindowCache((8, 8, 8), (4, 4, 4))
    with pytest.raises(ValueError, match="returned shape"):
        cache.infer(lambda box: np.zeros((1, 4, 4, 4), np.float32), lambda batch: batch[:, :, :2])
