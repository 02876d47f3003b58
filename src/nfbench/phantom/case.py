"""One synthetic whole-body MRI case: body, mimics, neurofibromas, partial volume, blur, texture,
bias field and Rician noise (each as strong as the case's :class:`~nfbench.phantom.difficulty.Difficulty`).

The library entry point is :func:`make_case`; tests elsewhere build their fixtures with
``make_case(size="tiny", rng=0)`` (about 0.26 M voxels, well under half a second).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import nibabel as nib
import numpy as np
from scipy import ndimage

from nfbench.io.volume import Volume
from nfbench.phantom.body import (
    TISSUE_STIR,
    TISSUE_T2,
    TISSUE_TEXTURE,
    Tissue,
    paint_body,
    paint_mimics,
)
from nfbench.phantom.difficulty import Difficulty, difficulty_for
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
"""Noise σ of the ``easy`` phantom (each level's is ``DIFFICULTIES[name].noise_sigma``)."""
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


def _thick_label(fine: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Instance label of the thick slices from ``k`` sub-slices each, and the IDs kept.

    A voxel belongs to the lesion holding most of its sub-slices (at least half). A lesion left
    with no voxel takes the one where it holds most, from a neighbour of two voxels or more if
    need be, so partial volume loses no lesion; IDs are made consecutive again if one is lost all
    the same (kept: the fine IDs in the new order).
    """
    n0, n1k, n2 = fine.shape
    out = np.zeros((n0, n1k // k, n2), dtype=fine.dtype)
    sizes = np.zeros(int(fine.max()) + 1, dtype=np.int64)
    for lesion_id, box in enumerate(ndimage.find_objects(fine), start=1):
        if box is None:
            continue
        y0, y1 = box[1].start // k * k, -(-box[1].stop // k) * k
        inside = fine[box[0], y0:y1, box[2]] == lesion_id
        count = inside.reshape(inside.shape[0], -1, k, inside.shape[2]).sum(axis=2)
        region = out[box[0], y0 // k : y1 // k, box[2]]
        take = (2 * count >= k) & (region == 0)
        if not take.any():
            open_ = (count > 0) & ((region == 0) | (sizes[region] > 1))
            if not open_.any():
                continue
            best = np.unravel_index(np.argmax(np.where(open_, count, -1)), count.shape)
            sizes[region[best]] -= 1
            take = np.zeros_like(take)
            take[best] = True
        region[take] = lesion_id
        sizes[lesion_id] += int(take.sum())
    kept = np.flatnonzero(sizes[1:] > 0) + 1
    if len(kept) < len(sizes) - 1:
        lookup = np.zeros(len(sizes), dtype=fine.dtype)
        lookup[kept] = np.arange(1, len(kept) + 1)
        out = lookup[out]
    return out, kept


def _smooth_field(shape: tuple[int, ...], spacing: tuple[float, ...], sigma_mm: tuple[float, float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise of unit standard deviation, correlated over ``sigma_mm``."""
    field = rng.standard_normal(shape, dtype=np.float32)
    ndimage.gaussian_filter(field, [s / d for s, d in zip(sigma_mm, spacing)], output=field, truncate=3.0)
    field /= max(float(field[::3, :, ::3].std()), 1e-6)
    return field


def _coarse(grid: Grid, step_mm: float) -> int:
    """In-plane decimation factor that brings the grid to about ``step_mm`` (smooth fields are cheap there)."""
    return max(1, int(round(step_mm / grid.spacing[0])))


def _upsample(field: np.ndarray, f: int, shape: tuple[int, int, int]) -> np.ndarray:
    if f == 1:
        return field
    return np.repeat(np.repeat(field, f, axis=0), f, axis=2)[: shape[0], :, : shape[2]]


def _texture(grid: Grid, tissue: np.ndarray, label: np.ndarray, level: Difficulty, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative texture: muscle striation along the limbs and trunk (head-foot), organ and lesion heterogeneity."""
    f = _coarse(grid, 1.25)
    shape = (-(-grid.shape[0] // f), grid.shape[1], -(-grid.shape[2] // f))
    spacing = (grid.spacing[0] * f, grid.spacing[1], grid.spacing[2] * f)
    fine = _smooth_field(shape, spacing, (1.2, 1.0, 7.0), rng)  # striation: fibres run head-foot
    fine += 0.8 * _smooth_field(shape, spacing, (8.0, 4.0, 8.0), rng)  # patchy heterogeneity
    field = _upsample(fine, f, grid.shape)
    amplitude = (level.texture * TISSUE_TEXTURE)[tissue]
    amplitude[label > 0] = level.lesion_texture
    return np.clip(1.0 + amplitude * field, 0.3, None)


def _fat_leak(grid: Grid, tissue: np.ndarray, level: Difficulty) -> np.ndarray:
    """Brightening of fat where fat suppression fails: near the body surface (air), strongest in the
    neck, shoulders and feet where the field is least homogeneous."""
    f = _coarse(grid, 5.0)
    body = (tissue[::f, :, ::f] != Tissue.AIR).astype(np.float32)
    spacing = (grid.spacing[0] * f, grid.spacing[1], grid.spacing[2] * f)
    ndimage.gaussian_filter(body, [12.0 / spacing[0], 6.0 / spacing[1], 12.0 / spacing[2]], output=body, truncate=3.0)
    near_air = np.clip(2.0 * (1.0 - _upsample(body, f, grid.shape)), 0.0, 1.0)
    z = grid.axes[2]
    region = 0.3 + np.exp(-(((z - 1460.0) / 110.0) ** 2)) + 0.7 * np.exp(-(((z - 60.0) / 90.0) ** 2))
    return 1.0 + level.fat_leak * near_air * region[None, None, :].astype(np.float32)


def _render_realistic(
    grid: Grid, n_target: int, level: Difficulty, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image (before bias and noise), label and lesion kinds with partial volume, blur, texture, mimics."""
    k = level.slice_oversample
    fine = Grid((grid.shape[0], grid.shape[1] * k, grid.shape[2]), (grid.spacing[0], grid.spacing[1] / k, grid.spacing[2]))
    tissue = paint_body(fine)
    if level.mimics:
        paint_mimics(fine, tissue, rng)
    table = TISSUE_STIR if level.mimics else TISSUE_T2
    image = table[tissue]
    label = np.zeros(fine.shape, dtype=np.uint16)
    kinds = _paint_all(fine, n_target, level, rng, tissue=tissue, image=image, label=label)
    thick_tissue = tissue[:, k // 2 :: k, :]  # the tissue at each slice's centre
    image = image.reshape(grid.shape[0], grid.shape[1], k, grid.shape[2]).mean(axis=2, dtype=np.float32)
    if k > 1:
        label, kept = _thick_label(label, k)
        kinds = [kinds[i - 1] for i in kept]
    if level.texture > 0:
        image *= _texture(grid, thick_tissue, label, level, rng)
    if level.fat_leak > 0:
        fat = thick_tissue == Tissue.FAT
        image[fat] *= _fat_leak(grid, thick_tissue, level)[fat]
    if level.psf_mm > 0:
        sigma = [max(level.psf_mm / grid.spacing[0], 0.6), 0.0, max(level.psf_mm / grid.spacing[2], 0.6)]
        ndimage.gaussian_filter(image, sigma, output=image, truncate=3.0)
    return np.ascontiguousarray(image), np.ascontiguousarray(label), kinds


def _paint_all(grid: Grid, n_target: int, level: Difficulty, rng: np.random.Generator, *,
               tissue: np.ndarray, image: np.ndarray, label: np.ndarray) -> list[str]:
    """Paint the planned lesions, then cutaneous nodules in place of lesions that found no room."""
    kinds = paint_lesions(grid, plan_lesions(n_target, rng, level), tissue=tissue, image=image, label=label,
                          spare_bone=level.spare_bone)
    tries = 0
    while len(kinds) < n_target and tries < 10 * n_target:
        kinds += paint_lesions(grid, [cutaneous_nodule(rng, level)], tissue=tissue, image=image, label=label,
                               first_id=len(kinds) + 1, spare_bone=level.spare_bone)
        tries += 1
    return kinds


def make_case(
    *,
    size: Size | str = "small",
    burden: Burden | str = "low",
    rng: np.random.Generator | int = 0,
    n_lesions: int | None = None,
    difficulty: str | Difficulty = "realistic",
) -> PhantomCase:
    """Make one synthetic coronal T2 fat-suppressed (STIR-like) whole-body MRI with neurofibromas.

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
    difficulty : {"realistic", "easy", "hard"} or Difficulty
        ``realistic`` (default): partial volume, blur, texture, mimics, clinical SNR (see
        :mod:`nfbench.phantom.difficulty`); ``easy``: the flat, high-contrast phantom of earlier
        versions, the same arrays for the same seed; ``hard``: lower contrast, more noise.

    Returns
    -------
    PhantomCase
        Image (float32) and instance label (uint16) in canonical RAS. The number of lesions equals
        the count drawn (lesions that find no free voxel are replaced by cutaneous nodules).

    Notes
    -----
    ``benchmarks/bench_phantom.py`` measures the generation time and memory of every size.

    Examples
    --------
    >>> case = make_case(size="tiny", burden="low", rng=0)
    >>> case.image.shape, case.label.dtype.name
    ((66, 16, 242), 'uint16')
    """
    grid = grid_for(size)
    level = difficulty_for(difficulty)
    rng = np.random.default_rng(rng)
    n_target = _n_lesions(burden, rng) if n_lesions is None else int(n_lesions)
    if n_target < 0:
        raise ValueError(f"n_lesions must be >= 0, got {n_target}")
    if level.slice_oversample > 1 or level.texture > 0 or level.mimics:
        image, label, kinds = _render_realistic(grid, n_target, level, rng)
    else:
        tissue = paint_body(grid)
        image = TISSUE_T2[tissue]
        label = np.zeros(grid.shape, dtype=np.uint16)
        kinds = _paint_all(grid, n_target, level, rng, tissue=tissue, image=image, label=label)
        del tissue
    buffer = np.empty(grid.shape, dtype=np.float32)
    image *= _bias_field(grid, rng, buffer)
    # Rician magnitude: |signal + n_re + i n_im|, both channels Gaussian with the level's sigma.
    sigma = np.float32(level.noise_sigma)
    rng.standard_normal(dtype=np.float32, out=buffer)
    buffer *= sigma
    image += buffer
    rng.standard_normal(dtype=np.float32, out=buffer)
    buffer *= sigma
    np.hypot(image, buffer, out=image)
    return PhantomCase(image, label, grid.affine, grid.spacing, tuple(kinds), str(burden))
