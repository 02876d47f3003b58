"""Synthetic coronal T2 fat-suppressed (STIR-like) whole-body MRI with neurofibromas (DESIGN §1).

- :func:`make_case` builds one case in memory (canonical RAS arrays, instance labels), at a
  difficulty of :data:`DIFFICULTIES` (``realistic`` by default, ``easy`` for the flat,
  high-contrast phantom of earlier versions);
- :func:`write_phantom_dataset` writes a whole dataset folder (``imagesTr``, ``labelsTr``,
  ``imagesTs_1``/``labelsTs_1`` high burden, ``imagesTs_2``/``labelsTs_2`` low burden).

Test fixtures elsewhere should use ``make_case(size="tiny", burden="low", rng=seed)``: 66 × 16 × 242
voxels, 3–15 lesions of various sizes, well under half a second; a test that needs lesions a
threshold can separate asks for ``difficulty="easy"``.
"""

from nfbench.phantom.case import BURDENS, SIZES, PhantomCase, grid_for, make_case
from nfbench.phantom.dataset import PHANTOM_VERSION, write_phantom_dataset
from nfbench.phantom.difficulty import DIFFICULTIES, Difficulty

__all__ = [
    "PhantomCase", "make_case", "grid_for", "write_phantom_dataset", "SIZES", "BURDENS", "PHANTOM_VERSION",
    "Difficulty", "DIFFICULTIES",
]
