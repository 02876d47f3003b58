"""Dataset discovery: ``imagesTr``/``labelsTr`` and any ``imagesTs*``/``labelsTs*``, paired by case name."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from nfbench.io.volume import NIFTI_SUFFIXES

__all__ = ["Problem", "Case", "Dataset", "discover_dataset", "case_name", "label_folder_for"]

_CHANNEL_SUFFIX = re.compile(r"_0000$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file (or folder) and what is wrong with it."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Case:
    """One scan: its image, its label (None when missing) and the subset it belongs to."""

    name: str
    image: Path
    label: Path | None
    subset: str  # the image folder's name: "imagesTr", "imagesTs_1", ...


@dataclass(frozen=True)
class Dataset:
    """The cases of a dataset folder per subset, and every problem met while pairing them."""

    root: Path
    subsets: dict[str, list[Case]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def cases(self) -> list[Case]:
        return [c for cases in self.subsets.values() for c in cases]

    def subset(self, name: str) -> list[Case]:
        """Cases of one subset, by image-folder name (``imagesTs_1``) or short name (``Ts_1``)."""
        key = name if name.startswith("images") else f"images{name}"
        if key not in self.subsets:
            known = ", ".join(sorted(self.subsets)) or "none"
            raise KeyError(f"{self.root}: no subset {name!r} (found: {known})")
        return self.subsets[key]

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {len(v)}" for k, v in self.subsets.items())
        return f"Dataset({self.root}: {parts}; {len(self.problems)} problems)"


def _strip_nifti(name: str) -> str | None:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def case_name(path: str | Path, *, image: bool = True, labelled: Collection[str] = ()) -> str | None:
    """Case name of a NIfTI file (None for a file that is not NIfTI).

    Images may carry the nnU-Net channel suffix ``_0000``, which is not part of the case name,
    unless a label has the image's whole name (``labelled``: the label names): then the case's
    own name ends in ``_0000``.
    """
    stem = _strip_nifti(Path(path).name)
    if stem is None:
        return None
    return _CHANNEL_SUFFIX.sub("", stem) if image and stem not in labelled else stem


def label_folder_for(root: Path, image_folder: str) -> tuple[Path | None, list[Problem]]:
    """The label folder of an image folder: ``labelsX`` or ``labelsX_instance``."""
    base = "labels" + image_folder[len("images") :]
    candidates = [root / base, root / f"{base}_instance"]
    found = [p for p in candidates if p.is_dir()]
    if len(found) > 1:
        return found[0], [Problem(found[1], f"two label folders for {image_folder}; using {found[0].name}")]
    return (found[0] if found else None), []


def _nifti_files(folder: Path, *, image: bool, labelled: Collection[str] = ()) -> tuple[dict[str, Path], list[Problem]]:
    files: dict[str, Path] = {}
    problems: list[Problem] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        name = case_name(path, image=image, labelled=labelled)
        if name is None:
            continue  # README, .DS_Store, ...: not part of the dataset
        if name in files:
            problems.append(Problem(path, f"case name {name!r} present twice (also {files[name].name})"))
            continue
        files[name] = path
    return files, problems


def discover_dataset(root: str | Path) -> Dataset:
    """Find every subset of a dataset folder and pair images with labels by case name.

    Problems (missing folders, unpaired files, duplicate case names) are collected, not raised,
    so a check can report all of them at once.
    """
    root = Path(root)
    if not root.is_dir():
        return Dataset(root, {}, [Problem(root, "dataset folder does not exist")])
    image_folders = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"images(Tr|Ts.*)", p.name))
    if not image_folders:
        return Dataset(root, {}, [Problem(root, "no imagesTr or imagesTs* folder found"), *_stray_folders(root, set())])
    subsets: dict[str, list[Case]] = {}
    problems: list[Problem] = []
    for folder in image_folders:
        label_dir, folder_problems = label_folder_for(root, folder.name)
        labels: dict[str, Path] = {}
        label_problems: list[Problem] = []
        if label_dir is None:
            missing = root / ("labels" + folder.name[len("images") :])
            folder_problems.append(Problem(missing, f"label folder for {folder.name} is missing"))
        else:
            labels, label_problems = _nifti_files(label_dir, image=False)
        images, found = _nifti_files(folder, image=True, labelled=labels.keys())
        problems += found
        if not images:
            problems.append(Problem(folder, "folder holds no NIfTI image"))
        problems += folder_problems + label_problems
        cases = []
        for name, image in images.items():
            label = labels.get(name)
            if label is None and label_dir is not None:
                problems.append(Problem(image, f"image without label (expected {label_dir.name}/{name}.nii.gz)"))
            cases.append(Case(name, image, label, folder.name))
        for name, label in labels.items():
            if name not in images:
                problems.append(Problem(label, f"label without image (expected {folder.name}/{name}.nii.gz or {name}_0000.nii.gz)"))
        subsets[folder.name] = cases
    return Dataset(root, subsets, problems + _stray_folders(root, {f.name for f in image_folders}))


_UNDERSTOOD_FOLDERS = ("subsets are imagesTr, imagesTs and imagesTs_<name> (any name starting imagesTs) with "
                       "their labels folders labelsTr, labelsTs and labelsTs_<name> (or the same ending _instance), "
                       "spelt with this case; the files of this folder are not read")


def _stray_folders(root: Path, image_folders: set[str]) -> list[Problem]:
    """Label folders without their image folder, and folders named images*/labels* (any case) that
    are no subset (``imagesTest``, ``imagestr2``, ``labelsVal``): their cases would silently be left out."""
    problems = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        labels = re.fullmatch(r"labels(Tr|Ts.*?)(_instance)?", path.name)
        if labels and f"images{labels.group(1)}" not in image_folders:
            problems.append(Problem(path, f"label folder without its image folder images{labels.group(1)}"))
        elif (not labels and path.name not in image_folders
              and re.match(r"images|labels", path.name, flags=re.IGNORECASE)):
            problems.append(Problem(path, f"folder name not understood: {_UNDERSTOOD_FOLDERS}"))
    return problems
