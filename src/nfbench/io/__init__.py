"""Reading and writing volumes, finding datasets, checking them, folds and 2D slices."""

from nfbench.io.dataset import Case, Dataset, Problem, case_name, discover_dataset
from nfbench.io.volume import NIFTI_SUFFIXES, Volume, VolumeError, load_volume, read_header, save_volume

__all__ = [
    "Case",
    "Dataset",
    "Problem",
    "case_name",
    "discover_dataset",
    "NIFTI_SUFFIXES",
    "Volume",
    "VolumeError",
    "load_volume",
    "read_header",
    "save_volume",
]
