"""NIfTI volumes in canonical RAS+ orientation, written back in their original orientation."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from nfbench.types import Spacing

__all__ = ["Volume", "VolumeError", "load_volume", "save_volume", "read_header", "read_voxels", "canonical_grid",
           "complex_problem", "NIFTI_SUFFIXES"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_RAS = axcodes2ornt(("R", "A", "S"))


class VolumeError(ValueError):
    """A file that cannot be used as a 3D volume; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D array in the closest canonical RAS+ orientation, with what is needed to write it back.

    ``data`` is indexed ``[i, j, k]`` = (left→right, posterior→anterior, inferior→superior).
    ``affine`` maps canonical voxel indices to RAS world millimetres. ``original_affine`` and
    ``header`` belong to the file as stored, and :func:`save_volume` restores that orientation.
    """

    data: np.ndarray
    affine: np.ndarray
    original_affine: np.ndarray
    header: nib.Nifti1Header = field(repr=False)
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> Spacing:
        """Voxel size in mm along the canonical axes."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def original_orientation(self) -> str:
        return "".join(nib.aff2axcodes(self.original_affine))

    def ijk_to_mm(self, ijk: np.ndarray | tuple[float, ...]) -> np.ndarray:
        """RAS world coordinates (mm) of canonical voxel indices (``(..., 3)``)."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def to_original(self, array: np.ndarray) -> np.ndarray:
        """Reorient an array in this volume's canonical grid back to the file's grid."""
        if array.shape != self.data.shape:
            raise ValueError(f"array shape {array.shape} differs from volume shape {self.data.shape}")
        back = ornt_transform(_RAS, io_orientation(self.original_affine))
        return apply_orientation(array, back)

    def __repr__(self) -> str:
        sp = " × ".join(f"{s:.3g}" for s in self.spacing)
        name = self.path.name if self.path else "in memory"
        return (
            f"Volume({name}: shape {self.shape}, spacing {sp} mm, stored {self.original_orientation}, "
            f"dtype {self.data.dtype}, {self.data.nbytes / 2**20:.1f} MiB)"
        )


def read_header(path: str | Path) -> nib.Nifti1Image:
    """Open a NIfTI file without reading its voxels (shape, affine and dtype are then cheap)."""
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path}: file does not exist")
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        raise VolumeError(f"{path}: not a readable NIfTI file ({err})") from err
    axes = np.asarray(img.affine, float)[:3, :3]
    if not np.isfinite(axes).all() or np.linalg.matrix_rank(axes) < 3:
        raise VolumeError(f"{path}: its affine does not place the voxels in space (voxel axes "
                          f"{np.round(axes, 4).tolist()}): set a valid qform or sform")
    return img  # type: ignore[return-value]


def _spatial_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) > 3 and all(s == 1 for s in shape[3:]):
        return shape[:3]  # type: ignore[return-value]
    raise VolumeError(f"{path}: expected a 3D volume, found shape {shape}")


def _to_ras(affine: np.ndarray) -> np.ndarray:
    """The orientation transform from a stored grid to the closest canonical RAS+ grid."""
    return ornt_transform(io_orientation(affine), _RAS)


def canonical_grid(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The affine and shape a stored grid has in canonical RAS+ (as :func:`load_volume` gives them).

    Lets a header alone tell where voxels lie as nfbench reads them, without reading the voxels.
    """
    to_ras = _to_ras(affine)
    ras_shape = [0, 0, 0]
    for axis, (target, _flip) in enumerate(to_ras):
        ras_shape[int(target)] = int(shape[axis])
    return affine @ inv_ornt_aff(to_ras, shape), tuple(ras_shape)  # type: ignore[return-value]


def read_voxels(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    """The voxels of ``img`` (scaled as nibabel scales them), checked against the gzip checksum.

    nibabel stops reading a ``.nii.gz`` once it has the voxels, before the gzip trailer, so a
    corrupted file would load with wrong voxels and no error. Reading through our own stream and
    then draining it to its end makes :mod:`gzip` verify the CRC, at no second decompression.
    """
    if not path.name.endswith(".gz"):
        return np.asanyarray(img.dataobj)
    with gzip.open(path, "rb") as stream:
        data = np.asanyarray(type(img).from_stream(stream).dataobj)
        while stream.read(1 << 20):
            pass
    return data


def complex_problem(dtype: np.dtype | type) -> str | None:
    """Why voxels of ``dtype`` cannot be used as a real image (None when they can).

    Casting complex voxels to a real type keeps the real part with only numpy's ComplexWarning,
    so a complex image (MR phase data, an FFT) would be evaluated on half of its content.
    """
    if not np.issubdtype(np.dtype(dtype), np.complexfloating):
        return None
    return (f"image holds complex values ({np.dtype(dtype)}); store a real image (e.g. the magnitude) "
            "to evaluate it")


def load_volume(path: str | Path, *, dtype: np.dtype | type | None = None) -> Volume:
    """Load a NIfTI file and bring it to the closest canonical RAS+ orientation.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz`` file.
    dtype : numpy dtype, optional
        Convert the voxels (e.g. ``np.float32`` for images). By default the stored type is kept
        (scaled files come back as floats, as nibabel applies the scaling).

    Returns
    -------
    Volume
        A trailing singleton 4th axis is squeezed; a real 4D volume raises :class:`VolumeError`,
        and so do complex voxels asked for as a real ``dtype`` (:func:`complex_problem`), before
        any voxel is read.
    """
    img = read_header(path)
    path = Path(path)
    shape = _spatial_shape(path, tuple(int(s) for s in img.shape))
    wants_real = dtype is not None and not np.issubdtype(np.dtype(dtype), np.complexfloating)
    complex_values = complex_problem(img.get_data_dtype()) if wants_real else None
    if complex_values:
        raise VolumeError(f"{path}: {complex_values}")
    try:
        data = read_voxels(path, img)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        raise VolumeError(f"{path}: truncated or corrupt voxel data ({err})") from err
    data = data.reshape(shape)
    original_affine = img.affine.copy()
    to_ras = _to_ras(original_affine)
    affine, _ = canonical_grid(original_affine, shape)
    # apply_orientation returns a strided view: one copy makes it contiguous (so later crops are
    # cheap) and converts the type at once, without a second full-size temporary.
    canonical = np.ascontiguousarray(apply_orientation(data, to_ras), dtype=dtype)
    return Volume(canonical, affine, original_affine, img.header.copy(), path)


def save_volume(volume: Volume, path: str | Path, *, data: np.ndarray | None = None) -> Path:
    """Write ``data`` (default: ``volume.data``), given in the canonical grid, in the file's original orientation.

    The original header is kept with its qform and sform as stored, so the output overlays its
    image in any viewer even where the two disagree (nibabel reads the sform, ITK the qform); the
    stored dtype follows ``data`` (bool → uint8).
    """
    array = volume.data if data is None else data
    if array.dtype == bool:
        array = array.astype(np.uint8)
    original = volume.to_original(array)
    header = volume.header.copy()
    header.set_data_dtype(original.dtype)
    header["cal_min"] = header["cal_max"] = 0  # the image's display range would hide a mask
    img = nib.Nifti1Image(original, None, header)
    if not np.allclose(header.get_best_affine(), volume.original_affine):  # a header not describing the volume
        img = nib.Nifti1Image(original, volume.original_affine, header)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path
