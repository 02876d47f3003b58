from __future__ import annotations

import numpy as np

from nfbench.interaction.boxes import largest_slice_box, middle_slice_box
from nfbench.lesions import lesion_table


def _lesion():
    instances = np.zeros((512, 9, 300), np.uint8)
    instances[100:110, 2, 50:60] = 1     # slices 2, 3 and 6 hold the lesion: the middle one is 3
    instances[104:106, 3, 52:53] = 1
    instances[90:130, 6, 40:80] = 1      # the largest slice
    return instances, lesion_table(instances, affine=np.eye(4))[0]


def test_largest_slice_box_is_tight_on_the_fullest_slice():
    instances, lesion = _lesion()
    box = largest_slice_box(instances, lesion)
    assert (box.lo, box.hi) == ((90, 6, 40), (130, 7, 80))


def test_middle_slice_box_follows_the_challenge():
    instances, lesion = _lesion()
    seen = set()
    for seed in range(40):
        box = middle_slice_box(instances, lesion, np.random.default_rng(seed))
        # Slice 3 (slices [2, 3, 6], index len // 2); tight box (104..106, 52..53) grown by the same
        # shift s in 0..5, scaled by size / 256: int(s * 2) on axis 0 (512 voxels), int(s * 300 / 256) on axis 2.
        s = next(s for s in range(6) if box.lo[0] == 104 - int(s * 2))
        assert (box.lo, box.hi) == ((104 - 2 * s, 3, 52 - int(s * 300 / 256)), (106 + 2 * s, 4, 53 + int(s * 300 / 256)))
        seen.add(s)
    assert seen == set(range(6))
    again = [middle_slice_box(instances, lesion, np.random.default_rng(7)) for _ in range(2)]
    assert again[0] == again[1]
