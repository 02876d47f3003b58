"""Neurofibromas for the phantom: plan them (shapes in mm), then draw them as instances.

Four kinds, following whole-body MRI studies of NF1 (Plotkin et al. 2012, PLoS ONE 7:e35711;
Mautner et al. 2008, Neuro-Oncology 10:593):

- ``cutaneous``: small (1.5–9 mm radius) nodules at or just under the skin, the most numerous;
- ``nodular``: discrete fusiform nodules on a deep nerve;
- ``chain``: a row of fusiform nodules along one nerve, each its own instance, some touching;
- ``plexiform``: large multilobulated masses following a nerve (paraspinal, neck, brachial and
  lumbosacral plexus, limbs), from a few ml to about a litre (every case with 50 or more lesions
  has one major mass of at least ~50 ml); most volume sits in the neck and pelvis because those
  nerves weigh most when a plexiform tumour picks its nerve.

Every lobe is a :class:`~nfbench.phantom.grid.Spheroid`; a lesion is drawn in its own bounding
box only. Lesions are bright on T2; lesions with a radius of at least 6 mm have a darker centre
(the "target sign"). A lesion only takes free voxels, so a later lesion touching an earlier one
keeps its own ID.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfbench.phantom.body import BODY_PARTS, NERVES, Nerve, Tissue, skin_point
from nfbench.phantom.difficulty import DIFFICULTIES, Difficulty
from nfbench.phantom.grid import Grid, Spheroid, spheroid_box, spheroid_q

__all__ = ["LesionPlan", "LESION_KINDS", "plan_lesions", "paint_lesions", "cutaneous_nodule"]

LESION_KINDS = ("cutaneous", "nodular", "chain", "plexiform")
_TARGET_MIN_RADIUS_MM = 6.0
_TARGET_CORE_Q = 0.3  # squared normalised radius of the darker core (≈ 55 % of the radius)
# Deep lesions stay out of air, lungs and brain; cutaneous nodules may bulge out of the skin.
_FORBIDDEN_DEEP = np.array([Tissue.AIR, Tissue.LUNG, Tissue.BRAIN])
# Where bone is spared, tumours grow around it (they remodel bone, they do not replace it).
_FORBIDDEN_BONE = np.array([Tissue.BONE, Tissue.MARROW, Tissue.VERTEBRA, Tissue.DISC, Tissue.FLUID, Tissue.CORD])
_EASY = DIFFICULTIES["easy"]


@dataclass(frozen=True, eq=False)
class LesionPlan:
    """One lesion before drawing: its kind, lobes (mm), rim and core intensity, and whether it is deep."""

    kind: str
    lobes: tuple[Spheroid, ...]
    rim: float
    core: float
    deep: bool


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _intensities(rng: np.random.Generator, radius_mm: float, level: Difficulty) -> tuple[float, float]:
    rim = float(rng.uniform(*level.lesion_rim))
    core = rim * float(rng.uniform(*level.lesion_core)) if radius_mm >= _TARGET_MIN_RADIUS_MM else rim
    return rim, core


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _perpendicular(rng: np.random.Generator, tangent: np.ndarray, scale: float) -> np.ndarray:
    """A random offset perpendicular to ``tangent`` with per-axis standard deviation ``scale``."""
    v = rng.normal(0.0, scale, 3)
    return v - np.dot(v, tangent) * tangent


_PART_AREA = np.array([
    np.sum(np.pi * (p.a[:-1] + p.a[1:] + p.b[:-1] + p.b[1:]) / 2 * np.diff(p.z)) for p in BODY_PARTS
])
_NERVE_WEIGHT = np.array([n.weight for n in NERVES])


def cutaneous_nodule(rng: np.random.Generator, level: Difficulty = _EASY) -> LesionPlan:
    """A small nodule at a random place of the skin (parts picked by surface area)."""
    part = BODY_PARTS[int(rng.choice(len(BODY_PARTS), p=_PART_AREA / _PART_AREA.sum()))]
    span = part.z[-1] - part.z[0]
    z = float(rng.uniform(part.z[0] + 0.05 * span, part.z[-1] - 0.05 * span))
    point, normal = skin_point(part, z, float(rng.uniform(0, 2 * np.pi)))
    r = _log_uniform(rng, *level.cutaneous_radius_mm)
    centre = point - normal * r * float(rng.uniform(-0.2, 1.3))
    lobe = Spheroid(centre, normal, r * float(rng.uniform(0.5, 1.0)), r)
    return LesionPlan("cutaneous", (lobe,), *_intensities(rng, r, level), deep=False)


def _fusiform(
    rng: np.random.Generator, nerve: Nerve, s: float, r: float, kind: str, level: Difficulty
) -> tuple[LesionPlan, float]:
    """A spindle-shaped nodule on a nerve at arc length ``s``; also returns its half-length."""
    point, tangent = nerve.at(s)
    a = r * float(rng.uniform(1.2, 2.2))
    lobe = Spheroid(point + _perpendicular(rng, tangent, 0.2 * r), tangent, a, r)
    return LesionPlan(kind, (lobe,), *_intensities(rng, r, level), deep=True), a


def _nodular(rng: np.random.Generator, level: Difficulty, radius_mm: tuple[float, float] = (3.0, 14.0)) -> LesionPlan:
    nerve = NERVES[int(rng.integers(len(NERVES)))]
    s = float(rng.uniform(0, nerve.length))
    return _fusiform(rng, nerve, s, _log_uniform(rng, *radius_mm), "nodular", level)[0]


def _chain(rng: np.random.Generator, n: int, level: Difficulty) -> list[LesionPlan]:
    nerve = NERVES[int(rng.integers(len(NERVES)))]
    s = float(rng.uniform(0, 0.5 * nerve.length))
    plans: list[LesionPlan] = []
    previous_a = 0.0
    for _ in range(n):
        r = _log_uniform(rng, 3.0, 10.0)
        # Gap factor below 1 makes neighbours overlap: they then touch as separate instances.
        s += (previous_a + 1.6 * r) * float(rng.uniform(0.85, 1.5)) if plans else 0.0
        if s > nerve.length:
            break
        plan, previous_a = _fusiform(rng, nerve, s, r, "chain", level)
        plans.append(plan)
    return plans


def _plexiform(rng: np.random.Generator, level: Difficulty, *, major: bool = False) -> LesionPlan:
    """A plexiform mass along a nerve; ``major`` ones (one per high-burden case) reach 50 ml to 1 l."""
    nerve = NERVES[int(rng.choice(len(NERVES), p=_NERVE_WEIGHT / _NERVE_WEIGHT.sum()))]
    length = min(_log_uniform(rng, 120.0, 320.0) if major else _log_uniform(rng, 30.0, 300.0), nerve.length)
    s0 = float(rng.uniform(0, nerve.length - length))
    r_base = _log_uniform(rng, 14.0, 28.0) if major else _log_uniform(rng, 6.0, 25.0)
    lobes: list[Spheroid] = []
    s = s0
    while s <= s0 + length:
        taper = 0.5 + 0.5 * np.sin(np.pi * (s - s0) / length)  # fusiform ends
        r = r_base * taper * float(np.exp(rng.normal(0.0, 0.25)))
        point, tangent = nerve.at(s)
        centre = point + _perpendicular(rng, tangent, 0.25 * r_base)
        lobes.append(Spheroid(centre, tangent, r * float(rng.uniform(1.0, 1.6)), r))
        s += 0.6 * r
    for _ in range(int(rng.poisson(length / 60.0))):  # satellite lobules: a multilobulated outline
        point, tangent = nerve.at(float(rng.uniform(s0, s0 + length)))
        offset = _unit(_perpendicular(rng, tangent, 1.0)) * r_base * float(rng.uniform(0.6, 1.1))
        r = r_base * float(rng.uniform(0.4, 0.8))
        lobes.append(Spheroid(point + offset, tangent, r * float(rng.uniform(1.0, 1.5)), r))
    return LesionPlan("plexiform", tuple(lobes), *_intensities(rng, r_base, level), deep=True)


def plan_lesions(n_lesions: int, rng: np.random.Generator, level: Difficulty = _EASY) -> list[LesionPlan]:
    """Plans for ``n_lesions`` lesions: a few plexiform masses, chains, deep nodules, the rest cutaneous.

    The mix follows the count: low burdens get 0–2 plexiform tumours and mostly cutaneous nodules,
    high burdens several plexiform tumours, chains of nodules along nerves and hundreds of nodules.
    Large lesions come first so that smaller ones drawn later touch them rather than cut into them.
    With ``level.big_low_burden``, a low burden (under 50) also gets one or two deep nodules of
    about 1–15 ml, as real low-burden scans have.
    """
    n_plex = min(int(rng.poisson(0.6 + n_lesions / 60.0)), 10, n_lesions)
    # A high burden always comes with at least one large plexiform tumour (internal tumour burden
    # grows with the number of lesions), so volumes span more than three orders of magnitude.
    n_major = 1 if n_lesions >= 50 else 0
    n_plex = max(n_plex, n_major)
    plans = [_plexiform(rng, level, major=k < n_major) for k in range(n_plex)]
    if level.big_low_burden and n_lesions < 50:
        n_big = min(int(rng.integers(1, 3)), n_lesions - len(plans))
        plans += [_nodular(rng, level, (6.5, 12.0)) for _ in range(n_big)]
    left = n_lesions - len(plans)
    if left >= 30:
        n_chain_total = int(round(0.1 * left))
    elif left >= 8 and rng.random() < 0.3:
        n_chain_total = int(rng.integers(3, 5))
    else:
        n_chain_total = 0
    while n_chain_total >= 3:
        chain = _chain(rng, min(int(rng.integers(3, 9)), n_chain_total), level)
        plans += chain
        n_chain_total -= max(len(chain), 1)
    left = n_lesions - len(plans)
    n_nodular = int(round(0.15 * left))
    plans += [_nodular(rng, level) for _ in range(n_nodular)]
    plans += [cutaneous_nodule(rng, level) for _ in range(left - n_nodular)]
    return plans


def _draw(grid: Grid, plan: LesionPlan) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray] | None:
    """Box, inside-mask and normalised radius ``q`` of a planned lesion (at least one voxel)."""
    bounds = [spheroid_box(lobe) for lobe in plan.lobes]
    box = grid.box(np.min([b[0] for b in bounds], axis=0), np.max([b[1] for b in bounds], axis=0))
    if box is not None:
        q = np.full(tuple(s.stop - s.start for s in box), np.inf, dtype=np.float32)
        for lobe, (lo, hi) in zip(plan.lobes, bounds):
            sub = grid.box(lo, hi)
            if sub is None:
                continue
            rel = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sub, box))
            np.minimum(q[rel], spheroid_q(grid, sub, lobe), out=q[rel])
        mask = q <= 1.0
        if mask.any():
            return box, mask, q
    # Smaller than a voxel: keep the voxel nearest to the first lobe's centre so the lesion exists.
    idx = grid.nearest_index(plan.lobes[0].centre)
    if idx is None:
        return None
    return tuple(slice(i, i + 1) for i in idx), np.ones((1, 1, 1), bool), np.ones((1, 1, 1), np.float32)


def paint_lesions(
    grid: Grid,
    plans: list[LesionPlan],
    *,
    tissue: np.ndarray,
    image: np.ndarray,
    label: np.ndarray,
    first_id: int = 1,
    spare_bone: bool = False,
) -> list[str]:
    """Draw planned lesions into ``label`` (instance IDs from ``first_id``) and ``image`` (in place).

    A lesion takes only voxels no earlier lesion holds; deep lesions also avoid air, lungs and
    brain (and with ``spare_bone`` bone, marrow, discs and the spinal canal). A lesion left with no voxel is skipped and uses no ID, so IDs stay consecutive.

    Returns
    -------
    list of str
        The kind of every lesion drawn, in ID order.
    """
    kinds: list[str] = []
    forbidden = np.concatenate([_FORBIDDEN_DEEP, _FORBIDDEN_BONE]) if spare_bone else _FORBIDDEN_DEEP
    for plan in plans:
        drawn = _draw(grid, plan)
        if drawn is None:
            continue
        box, mask, q = drawn
        region = label[box]
        keep = mask & (region == 0)
        if plan.deep:
            keep &= ~np.isin(tissue[box], forbidden)
        if not keep.any():
            continue
        region[keep] = first_id + len(kinds)
        core = np.clip(1.0 - q[keep] / _TARGET_CORE_Q, 0.0, 1.0)
        image[box][keep] = plan.rim - (plan.rim - plan.core) * core
        kinds.append(plan.kind)
    return kinds
