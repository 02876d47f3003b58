"""One synthetic whole-body MRI case: body, neurofibromas, bias field and Rician noise.

The library entry point is :func:`make_case`; tests elsewhere build their fixtures with
``make_case(size="tiny", rng=0)`` (about 0.26 M voxels, well under half a second).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import nibabel as nib
import numpy as np

from nfbench.io.volume import Volume
from nfbench.phantom.body import TISSUE_T2, paint_body
from nfbench.phantom.grid import FOV_MM, Grid
from nfbench.phantom.lesions import cutaneous_nodule, paint_lesions, plan_lesions
from nfbench.types import Spacing

__all__ = [
    "PhantomCase", "make_case", "grid_for", "SIZES", "BURDENS", "BURDEN_RANGES", "NOISE_SIGMA",
    "STORED_ORIENTATION", "Size", "Burden",
]

Size = Literal["tiny", "small", "full"]
Burden = Literal["low", "high", "mixed"]

SIZES: dict[str, tuple[tuple[int, int, int], Spacing]] = {
    # The original data: 0.625 mm in-plane, 31 coronal slices of 7.8 mm (RAS order here).
    "full": ((800, 31, 2900), (0.625, 7.8, 0.625)),
    # Same anatomy and slices, in-plane 4× coarser: 4.5 M voxels.
    "small": ((200, 31, 725), (2.5, 7.8, 2.5)),
    # For unit tests: 7.5 mm in-plane and 16 slices of 15.6 mm: 0.26 M voxels.
    "tiny": ((66, 16, 242), (7.5, 15.6, 7.5)),
}
BURDENS = ("low", "high", "mixed")
BURDEN_RANGES = {"low": (3, 15), "high": (100, 400), "mixed": (3, 400)}
"""Inclusive lesion-count ranges per burden (``mixed``: log-uniform over the whole range)."""
NOISE_SIGMA = 18.0
"""Standard deviation of each Gaussian channel before the magnitude (Rician noise)."""
STORED_ORIENTATION = ("R", "S", "A")
"""Axis codes of the arrays as written to NIfTI, like the original coronal scans (R, S, A)."""


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """A synthetic case in canonical RAS: image, instance label and geometry.

    Attributes
    ----------
    image : ndarray of float32, shape (n0, n1, n2)
        T2 fat-suppressed-like intensities (arbitrary units; CSF ≈ 1000 before the bias field).
    label : ndarray of uint16, same shape
        Instance map: 0 = background, 1..N = lesions (touching lesions keep different IDs).
    affine : ndarray, shape (4, 4)
        Canonical RAS affine (index → world mm).
    spacing : tuple of float
        Voxel size (mm) along the RAS axes.
    kinds : tuple of str
        Kind of lesion ``i + 1``: ``cutaneous``, ``nodular``, ``chain`` or ``plexiform``.
    burden : str
        The burden asked for (``low``, ``high``, ``mixed``).
    """

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    spacing: Spacing
    kinds: tuple[str, ...]
    burden: str

    @property
    def n_lesions(self) -> int:
        return len(self.kinds)

    @property
    def stored_affine(self) -> np.ndarray:
        """Affine of the array as written to disk, axes (R, S, A): canonical axes (0, 2, 1)."""
        return self.affine[:, [0, 2, 1, 3]]

    def volumes(self, *, image_dtype: type = np.int16) -> tuple[Volume, Volume]:
        """Image and label as :class:`~nfbench.io.volume.Volume` that :func:`save_volume` writes in RSA order.

        The image is rounded to ``image_dtype`` (int16 by default, as scanners store magnitude
        images: half the size of float32 and the integer path real data take).
        """
        header = nib.Nifti1Header()
        header.set_xyzt_units("mm")
        header.set_sform(self.stored_affine, code=1)
        header.set_qform(self.stored_affine, code=1)
        image = self.image
        if np.issubdtype(image_dtype, np.integer):
            info = np.iinfo(image_dtype)
            image = np.clip(np.rint(image), info.min, info.max).astype(image_dtype)
        else:
            image = image.astype(image_dtype, copy=False)
        return (
            Volume(image, self.affine, self.stored_affine, header.copy(), None),
            Volume(self.label, self.affine, self.stored_affine, header.copy(), None),
        )

    def __repr__(self) -> str:
        sp = " × ".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"PhantomCase(shape {self.image.shape}, spacing {sp} mm, {self.n_lesions} lesions, "
            f"burden {self.burden})"
        )


def grid_for(size: str) -> Grid:
    """The voxel grid of a phantom size (``tiny``, ``small`` or ``full``)."""
    if size not in SIZES:
        raise ValueError(f"unknown phantom size {size!r}; choose one of {', '.join(SIZES)}")
    shape, spacing = SIZES[size]
    return Grid(shape, spacing)


def _n_lesions(burden: str, rng: np.random.Generator) -> int:
    if burden not in BURDEN_RANGES:
        raise ValueError(f"unknown burden {burden!r}; choose one of {', '.join(BURDENS)}")
    lo, hi = BURDEN_RANGES[burden]
    if burden == "mixed":
        return int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
    return int(rng.integers(lo, hi + 1))


def _interp_matrix(coords: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Linear interpolation weights (n_coords, n_knots) from knot values to coordinates."""
    eye = np.eye(len(knots))
    return np.stack([np.interp(coords, knots, eye[k]) for k in range(len(knots))], axis=1).astype(np.float32)


def _bias_field(grid: Grid, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """A smooth multiplicative bias field into ``out``: coarse random log-field, coil stations, coil depth.

    The log-field lives on a 5 × 3 × 12 knot grid and is upsampled separably (three small matrix
    products), so the full volume is touched only once per coronal slice.
    """
    x, y, z = grid.axes
    knots = [np.linspace(-FOV_MM[0] / 2, FOV_MM[0] / 2, 5), np.linspace(-FOV_MM[1] / 2, FOV_MM[1] / 2, 3),
             np.linspace(0.0, FOV_MM[2], 12)]
    coarse = rng.normal(0.0, 0.15, (5, 3, 12)).astype(np.float32)
    # Whole-body scans are stitched from ~4 coil stations whose gains differ a little.
    edges = np.sort(rng.uniform(0.2, 0.8, 3)) * FOV_MM[2]
    gains = rng.normal(0.0, 0.06, 4)
    station = gains[0] + sum(
        (gains[k + 1] - gains[k]) / (1 + np.exp(-(z - e) / 15.0)) for k, e in enumerate(edges)
    )
    depth = 0.15 * (y / (FOV_MM[1] / 2)) ** 2  # brighter close to the anterior and posterior coils
    wx, wy, wz = (_interp_matrix(c, k) for c, k in zip((x, y, z), knots))
    along_z = coarse @ wz.T + station.astype(np.float32)  # (5, 3, n2)
    along_xz = np.tensordot(wx, along_z, axes=(1, 0))  # (n0, 3, n2)
    for j in range(grid.shape[1]):
        np.einsum("ikz,k->iz", along_xz, wy[j], out=out[:, j, :])
        out[:, j, :] += np.float32(depth[j])
    return np.exp(out, out=out)


def make_case(
    *,
    size: Size | str = "small",
    burden: Burden | str = "low",
    rng: np.random.Generator | int = 0,
    n_lesions: int | None = None,
) -> PhantomCase:
    """Make one synthetic coronal T2 fat-suppressed whole-body MRI with neurofibromas.

    Parameters
    ----------
    size : {"small", "tiny", "full"}
        ``full``: 800 × 31 × 2900 voxels of 0.625 × 7.8 × 0.625 mm (RAS order), like the original
        scans; ``small`` (default): 200 × 31 × 725 of 2.5 × 7.8 × 2.5 mm; ``tiny``: 66 × 16 × 242
        of 7.5 × 15.6 × 7.5 mm, for unit tests. Same anatomy and field of view in all three.
    burden : {"low", "high", "mixed"}
        Lesion count drawn uniformly in 3–15 (low) or 100–400 (high), or log-uniformly in 3–400
        (mixed).
    rng : numpy.random.Generator or int
        All randomness comes from here; the same seed gives identical arrays (on the same NumPy).
    n_lesions : int, optional
        Ask for an exact lesion count instead of drawing it from ``burden``.

    Returns
    -------
    PhantomCase
        Image (float32) and instance label (uint16) in canonical RAS. The number of lesions equals
        the count drawn (lesions that find no free voxel are replaced by cutaneous nodules).

    Notes
    -----
    Measured on a 2-core machine: tiny 0.06–0.12 s, small 0.3–0.4 s, full 3.5–5.5 s (high burden,
    384 lesions) with a peak resident memory of 0.75 GiB for the whole process; writing a full
    case as NIfTI (gzip) adds about 2 s and brings the peak to 1.0 GiB.

    Examples
    --------
    >>> case = make_case(size="tiny", burden="low", rng=0)
    >>> case.image.shape, case.label.dtype.name
    ((66, 16, 242), 'uint16')
    """
    grid = grid_for(size)
    rng = np.random.default_rng(rng)
    n_target = _n_lesions(burden, rng) if n_lesions is None else int(n_lesions)
    if n_target < 0:
        raise ValueError(f"n_lesions must be >= 0, got {n_target}")
    tissue = paint_body(grid)
    image = TISSUE_T2[tissue]
    label = np.zeros(grid.shape, dtype=np.uint16)
    kinds = paint_lesions(grid, plan_lesions(n_target, rng), tissue=tissue, image=image, label=label)
    tries = 0
    while len(kinds) < n_target and tries < 10 * n_target:  # replace lesions that found no room
        kinds += paint_lesions(grid, [cutaneous_nodule(rng)], tissue=tissue, image=image, label=label,
                               first_id=len(kinds) + 1)
        tries += 1
    del tissue
    buffer = np.empty(grid.shape, dtype=np.float32)
    image *= _bias_field(grid, rng, buffer)
    # Rician magnitude: |signal + n_re + i n_im|, both channels Gaussian with NOISE_SIGMA.
    rng.standard_normal(dtype=np.float32, out=buffer)
    buffer *= np.float32(NOISE_SIGMA)
    image += buffer
    rng.standard_normal(dtype=np.float32, out=buffer)
    buffer *= np.float32(NOISE_SIGMA)
    np.hypot(image, buffer, out=image)
    return PhantomCase(image, label, grid.affine, grid.spacing, tuple(kinds), str(burden))
