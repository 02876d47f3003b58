"""`FrameStack`: the frames 2D models see are the PNGs of `nfbench data slice`, and pixels map back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nfbench.io.dataset import discover_dataset
from nfbench.io.slices import slice_case
from nfbench.io.volume import load_volume
from nfbench.models.blocks.frames import FrameAnswer, FrameStack
from nfbench.phantom import write_phantom_dataset


def test_frames_are_the_sliced_pngs(tmp_path):
    write_phantom_dataset(tmp_path / "data", cases=1, test_cases=0, size="tiny", seed=3, progress=False)
    case = discover_dataset(tmp_path / "data").subset("imagesTr")[0]
    sliced = slice_case(case, tmp_path / "slices")
    volume = load_volume(case.image)
    stack = FrameStack.of(volume.data.shape, volume.spacing)
    frames = stack.frames(volume.data)
    assert stack.axis == sliced.slice_axis == 1 and len(frames) == sliced.n_frames
    for n in (0, len(frames) // 2, len(frames) - 1):
        png = np.asarray(Image.open(tmp_path / "slices" / sliced.image_dir / f"{n:05d}.png"))
        assert np.array_equal(frames[n], png)


def test_coronal_frames_show_the_head_up_and_the_patients_right_on_the_left():
    stack = FrameStack.of((5, 4, 7), (1.0, 7.8, 1.0))
    assert stack.axis == 1 and stack.frame_shape == (7, 5) and stack.n_frames == 4
    assert stack.pixel((4, 2, 6)) == (2, 0, 0)  # rightmost, most superior voxel: top-left pixel of frame 2
    assert stack.pixel((0, 0, 0)) == (0, 6, 4)  # leftmost, most inferior: bottom-right of frame 0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_pixels_masks_and_boxes_map_back_to_their_voxels(axis):
    rng = np.random.default_rng(axis)
    stack = FrameStack((6, 5, 9), axis)
    mask = rng.random(stack.shape) > 0.7
    masks = np.stack([stack.frame(mask, n) for n in range(stack.n_frames)])
    assert np.array_equal(stack.to_volume(masks), mask)
    for ijk in map(tuple, np.argwhere(mask)[:10]):
        n, row, col = stack.pixel(ijk)
        assert masks[n, row, col] and stack.voxel(n, row, col) == ijk
    lo, hi = (1, 1, 2), (4, 3, 7)
    block = np.zeros(stack.shape, bool)
    block[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
    rows, cols = np.nonzero(stack.frame(block, lo[axis]))
    assert stack.box(lo, hi) == (cols.min(), rows.min(), cols.max(), rows.max())


def test_a_mask_of_the_wrong_shape_is_refused():
    stack = FrameStack((6, 5, 9), 1)
    with pytest.raises(ValueError, match="do not fit"):
        stack.to_volume(np.zeros((5, 6, 9), bool))


def test_frame_answer_is_the_masks_box_and_clears_what_the_object_left():
    stack = FrameStack.of((9, 6, 11), (1.0, 7.8, 1.0))
    rng = np.random.default_rng(0)
    answer = FrameAnswer(stack)

    def applied(volume, prediction):
        volume[prediction.box] = prediction.mask
        return volume

    masks = {n: rng.random(stack.frame_shape) > 0.7 for n in (1, 2, 4)}
    masks[3] = np.zeros(stack.frame_shape, bool)
    full = np.zeros((stack.n_frames, *stack.frame_shape), bool)
    for n, mask in masks.items():
        full[n] = mask
    first = answer(masks)
    assert first.box[stack.axis] == slice(1, 5)
    assert np.array_equal(applied(np.zeros(stack.shape, bool), first), stack.to_volume(full))
    smaller = {2: np.zeros(stack.frame_shape, bool)}
    smaller[2][2, 3] = True
    second = answer(smaller)
    assert second.box == first.box  # grown to the previous answer, which it clears
    expected = np.zeros_like(full)
    expected[2] = smaller[2]
    assert np.array_equal(applied(applied(np.zeros(stack.shape, bool), first), second), stack.to_volume(expected))
    third = answer({})  # the object is gone: its last box is cleared
    assert third.mask.shape == tuple(s.stop - s.start for s in third.box) and not third.mask.any()
    assert third.box[stack.axis] == slice(2, 3)
    assert answer({}).box == (slice(0, 0),) * 3  # nothing answered, nothing changes
