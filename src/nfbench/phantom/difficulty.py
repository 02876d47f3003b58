"""How hard the phantom is: every knob of realism in one place, one :class:`Difficulty` per level.

``easy`` reproduces the phantom of ``PHANTOM_VERSION`` 1 exactly (same arrays for the same seed): flat
tissue shades, lesions ~37 noise σ above their surroundings, no partial volume. ``realistic`` (the
default) imitates coronal STIR whole-body MRI: thick slices rendered from thinner ones (partial
volume), in-plane blur, tissue texture, bright mimics at lesion-like intensity, imperfect fat
suppression, Rician noise at a clinical SNR. ``hard`` turns the same knobs further.

The numbers are tuned so that on the ``small`` realistic dataset the lesion contrast-to-noise against
a 2-voxel shell has a median of 2–6 σ, most voxels as bright as lesions are not lesion, and the
weight-free baselines reach a lesion Dice of roughly 0.45–0.85 after 3 clicks
(``benchmarks/bench_phantom.py`` measures them). Re-tune here, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Difficulty", "DIFFICULTIES", "difficulty_for"]


@dataclass(frozen=True)
class Difficulty:
    """The realism knobs of one difficulty level (intensities in the phantom's units, CSF ≈ 1000)."""

    name: str
    noise_sigma: float
    """Standard deviation of each Gaussian channel before the magnitude (Rician noise)."""
    slice_oversample: int
    """Sub-slices rendered per thick coronal slice and averaged (1: no partial volume)."""
    psf_mm: float
    """In-plane Gaussian blur (σ, mm) of the acquisition; at least 0.6 voxel is applied when > 0."""
    texture: float
    """Scale of the tissue texture (muscle striation, organ heterogeneity); 0: flat shades."""
    mimics: bool
    """Draw lymph nodes, slow-flow veins, bowel, stomach, joint fluid and glands."""
    fat_leak: float
    """Relative brightening of fat where fat suppression fails (near air, neck and extremities)."""
    lesion_rim: tuple[float, float]
    """Range of a lesion's rim intensity (before texture, partial volume and bias)."""
    lesion_core: tuple[float, float]
    """Range of the core/rim ratio of lesions showing a target sign."""
    lesion_texture: float
    """Relative internal heterogeneity of lesions."""
    cutaneous_radius_mm: tuple[float, float]
    """Radius range of cutaneous nodules (log-uniform)."""
    spare_bone: bool
    """Deep lesions keep out of bone, marrow, vertebrae and discs instead of overwriting them."""
    big_low_burden: bool
    """Low-burden cases get one or two deep lesions of realistic size (about 1–15 ml)."""


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(
        "easy", noise_sigma=18.0, slice_oversample=1, psf_mm=0.0, texture=0.0, mimics=False,
        fat_leak=0.0, lesion_rim=(700.0, 900.0), lesion_core=(0.4, 0.6), lesion_texture=0.0,
        cutaneous_radius_mm=(1.5, 9.0), spare_bone=False, big_low_burden=False,
    ),
    "realistic": Difficulty(
        "realistic", noise_sigma=55.0, slice_oversample=3, psf_mm=1.0, texture=1.0, mimics=True,
        fat_leak=2.0, lesion_rim=(350.0, 700.0), lesion_core=(0.45, 0.75), lesion_texture=0.18,
        cutaneous_radius_mm=(2.5, 10.0), spare_bone=True, big_low_burden=True,
    ),
    "hard": Difficulty(
        "hard", noise_sigma=60.0, slice_oversample=3, psf_mm=1.5, texture=1.4, mimics=True,
        fat_leak=5.0, lesion_rim=(320.0, 620.0), lesion_core=(0.5, 0.85), lesion_texture=0.25,
        cutaneous_radius_mm=(2.0, 9.0), spare_bone=True, big_low_burden=True,
    ),
}
"""The difficulty levels by name; ``realistic`` is the default everywhere."""


def difficulty_for(difficulty: str | Difficulty) -> Difficulty:
    """The :class:`Difficulty` of a level name (or the object itself)."""
    if isinstance(difficulty, Difficulty):
        return difficulty
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown phantom difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    return DIFFICULTIES[difficulty]
