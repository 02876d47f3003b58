"""Small hand-made NIfTI files and dataset folders for the I/O tests (a few thousand voxels each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

# Stored orientations the tests run over: the affine's 3×3 part, with a non-trivial origin added.
_C, _S = np.cos(np.radians(20.0)), np.sin(np.radians(20.0))
ORIENTATIONS: dict[str, np.ndarray] = {
    "RAS": np.diag([0.8, 1.1, 3.0]),
    "LPS": np.diag([-0.8, -1.1, 3.0]),
    # The original's coronal whole-body layout: axes point to Right, Superior, Anterior (thick).
    "RSA": np.array([[0.8, 0.0, 0.0], [0.0, 0.0, 7.8], [0.0, 1.1, 0.0]]),
    # A coronal stack stored L, S, P, rotated 20° about the superior axis and 10° about the
    # left-right axis: closest canonical code LSP, every axis needs a flip or a swap.
    "oblique": (
        np.array([[_C, -_S, 0.0], [_S, _C, 0.0], [0.0, 0.0, 1.0]])
        @ np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.17), -np.sin(0.17)], [0.0, np.sin(0.17), np.cos(0.17)]])
        @ np.array([[-0.8, 0.0, 0.0], [0.0, 0.0, -3.0], [0.0, 1.1, 0.0]])
    ),
}


def make_affine(orientation: str, origin: tuple[float, float, float] = (-12.5, 40.25, -301.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = ORIENTATIONS[orientation]
    affine[:3, 3] = origin
    return affine


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``data`` with ``affine`` (default RAS, 1 mm) the way scanners' converters do (sform + qform)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, path)
    return path


@pytest.fixture
def nifti() -> Callable[..., Path]:
    return write_nifti


def image_and_label(shape: tuple[int, int, int] = (12, 6, 20), *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A positive float image and a binary label with two lesions (sizes 8 and 1 voxels)."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(10.0, 100.0, size=shape).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    label[2:4, 1:3, 2:4] = 1  # 8 voxels
    label[9, 4, 15] = 1  # 1 voxel, far from the other
    return image, label


@pytest.fixture
def dataset(tmp_path: Path) -> Callable[..., Path]:
    """Build ``root/imagesTr`` + ``root/labelsTr`` with the named cases (``_0000`` image suffix)."""

    def build(names: tuple[str, ...] = ("case_001", "case_002"), *, subset: str = "Tr",
              affine: np.ndarray | None = None) -> Path:
        root = tmp_path / "data"
        for n, name in enumerate(names):
            image, label = image_and_label(seed=n)
            write_nifti(root / f"images{subset}" / f"{name}_0000.nii.gz", image, affine)
            write_nifti(root / f"labels{subset}" / f"{name}.nii.gz", label, affine)
        return root

    return build


@pytest.fixture
def affine_of() -> Callable[..., np.ndarray]:
    """``affine_of("RSA")``: a stored affine of that orientation (see ORIENTATIONS)."""
    return make_affine
