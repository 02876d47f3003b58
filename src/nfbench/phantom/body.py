"""Anatomy of the phantom: body parts, organs, spine, and the nerve paths neurofibromas follow.

The body is a union of :class:`~nfbench.phantom.grid.Tube` parts (head, neck, trunk, arms hanging
at the sides, legs), each drawn in layers: skin, dark (fat-suppressed) subcutaneous fat, muscle.
Organs and bones are spheroids and tubes drawn on top, only where there is already body. Tissue
intensities imitate a coronal T2 fat-suppressed scan: fluid (CSF, bladder, eyes) brightest, spleen,
kidneys and brain bright-ish, muscle and liver low, fat, bone marrow and lung dark
(:data:`TISSUE_T2`, the easy phantom; :data:`TISSUE_STIR`, the realistic ones). Realistic phantoms
also get :func:`paint_mimics`: lymph nodes, slow-flow veins, bowel, joint fluid, glands, nerves.

Coordinates are model millimetres (see :mod:`nfbench.phantom.grid`); the patient's right is +x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from nfbench.phantom.grid import Grid, Spheroid, Tube, spheroid_box, spheroid_q, tube_mask

__all__ = [
    "Tissue", "TISSUE_T2", "TISSUE_STIR", "TISSUE_TEXTURE", "BODY_PARTS", "NERVES", "Nerve", "paint_body",
    "paint_mimics", "spine_y", "skin_point",
]


class Tissue:
    """Tissue codes of the anatomy map (uint8)."""

    AIR, SKIN, FAT, MUSCLE, BONE, MARROW, LUNG, HEART, LIVER = 0, 1, 2, 3, 4, 5, 6, 7, 8
    SPLEEN, KIDNEY, FLUID, BRAIN, CORD, DISC, VERTEBRA = 9, 10, 11, 12, 13, 14, 15
    # Bright mimics, drawn only by :func:`paint_mimics` (realistic and hard phantoms).
    LYMPH, VEIN, BOWEL, JOINT, GLAND, NERVE = 16, 17, 18, 19, 20, 21


# Mean T2 fat-suppressed intensity per tissue code (arbitrary units, CSF ≈ 1000): the easy phantom.
TISSUE_T2 = np.array(
    [0, 220, 55, 170, 30, 70, 20, 110, 150, 380, 420, 1000, 450, 420, 550, 110, 700, 600, 750, 900, 400, 300],
    dtype=np.float32,
)
# The same on STIR as read on clinical scans: thin, moderately bright skin, suppressed fat, dark
# marrow and flowing blood, discs only a little brighter than vertebrae (no ladder), lymph nodes,
# spleen, kidneys, slow veins, bowel fluid and joints at lesion-like brightness.
TISSUE_STIR = np.array(
    [0, 120, 45, 140, 25, 60, 18, 75, 115, 460, 520, 980, 360, 330, 190, 85, 560, 470, 640, 820, 330, 290],
    dtype=np.float32,
)
# Relative amplitude of the texture per tissue: muscle striation, organ and node heterogeneity.
TISSUE_TEXTURE = np.array(
    [0, .10, .25, .12, .2, .25, .3, .15, .10, .12, .15, .04, .08, .05, .15, .18, .18, .25, .35, .08, .15, .12],
    dtype=np.float32,
)


def _tube(
    name: str, z: ArrayLike, cx: ArrayLike, cy: ArrayLike, a: ArrayLike, b: ArrayLike, fat_mm: float
) -> Tube:
    return Tube.from_knots(name, z, cx, cy, a, b, fat_mm=fat_mm)


def _limbs() -> list[Tube]:
    parts = []
    for side, s in (("left", -1.0), ("right", 1.0)):
        parts.append(_tube(
            f"{side} leg",
            [22, 40, 90, 420, 480, 540, 800, 880, 920],
            s * np.array([105, 105, 103, 98, 95, 95, 92, 90, 85.0]),
            [0, 0, -5, -10, 0, 0, 0, 0, 0],
            [22, 35, 42, 55, 48, 55, 78, 85, 80],
            [28, 40, 45, 60, 50, 55, 80, 90, 85],
            8.0,
        ))
        parts.append(_tube(
            f"{side} arm",
            [790, 810, 860, 1100, 1150, 1380, 1440, 1470],
            s * np.array([215, 215, 213, 208, 207, 203, 190, 175.0]),
            0.0,
            [12, 22, 28, 33, 38, 45, 42, 20],
            [18, 26, 28, 35, 38, 48, 45, 20],
            6.0,
        ))
    return parts


BODY_PARTS: tuple[Tube, ...] = (
    _tube(
        "trunk",
        [860, 900, 980, 1060, 1150, 1250, 1350, 1420, 1460, 1480],
        0.0,
        [0, 0, 5, 5, 5, 5, 0, 0, -5, -10],
        [150, 175, 165, 150, 155, 165, 175, 175, 150, 90],
        [95, 110, 108, 102, 105, 110, 105, 95, 80, 60],
        18.0,
    ),
    _tube("neck", [1440, 1470, 1560, 1585], 0.0, -10.0, [70, 58, 55, 60], [65, 55, 55, 60], 6.0),
    _tube(
        "head",
        [1555, 1580, 1620, 1680, 1730, 1770, 1790, 1800],
        0.0,
        [5, 5, 8, 5, 0, 0, 0, 0],
        [50, 65, 75, 78, 72, 55, 30, 8],
        [60, 80, 95, 100, 95, 75, 40, 10],
        4.0,
    ),
    *_limbs(),
)
"""The body parts, drawn in this order within each layer."""

_SPINE_Z = np.array([860, 950, 1050, 1150, 1300, 1420, 1500, 1580, 1640.0])
_SPINE_Y = np.array([-60, -72, -58, -62, -75, -66, -48, -38, -30.0])


def spine_y(z: np.ndarray | float) -> np.ndarray:
    """Antero-posterior position (mm) of the vertebral bodies' axis at height ``z`` (spine curves)."""
    return np.interp(z, _SPINE_Z, _SPINE_Y)


def _ellipsoid_mask(
    grid: Grid, centre: ArrayLike, semi: ArrayLike
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    centre, semi = np.asarray(centre, float), np.asarray(semi, float)
    box = grid.box(centre - semi, centre + semi)
    if box is None:
        return None
    x, y, z = grid.coords(box)
    q = ((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2 + ((z - centre[2]) / semi[2]) ** 2
    return box, q <= 1.0


# Organs: (tissue, centre, semi-axes), drawn in order where there is already body.
_ORGANS = [
    (Tissue.LIVER, (70, 10, 1120), (95, 80, 70)),
    (Tissue.SPLEEN, (-95, -30, 1140), (35, 40, 55)),
    (Tissue.KIDNEY, (-70, -45, 1060), (28, 25, 55)),
    (Tissue.KIDNEY, (70, -45, 1050), (28, 25, 55)),
    (Tissue.FLUID, (60, 55, 1090), (12, 15, 25)),  # gallbladder
    (Tissue.FLUID, (0, 35, 930), (40, 35, 35)),  # bladder
    (Tissue.LUNG, (-78, 0, 1295), (62, 75, 125)),
    (Tissue.LUNG, (78, 0, 1295), (62, 75, 125)),
    (Tissue.HEART, (-22, 25, 1225), (60, 50, 65)),
    (Tissue.MARROW, (-110, -20, 965), (45, 18, 55)),  # iliac wings
    (Tissue.MARROW, (110, -20, 965), (45, 18, 55)),
    (Tissue.BONE, (0, 3, 1705), (66, 84, 74)),  # skull
    (Tissue.FLUID, (0, 3, 1705), (60, 78, 68)),  # CSF around the brain
    (Tissue.BRAIN, (0, 3, 1707), (56, 74, 64)),
    (Tissue.FLUID, (-32, 80, 1660), (12, 12, 12)),  # eyes
    (Tissue.FLUID, (32, 80, 1660), (12, 12, 12)),
]


def _bones_and_spine() -> list[tuple[int, Tube]]:
    zs = np.linspace(870, 1640, 40)
    ys = spine_y(zs)
    radius = np.interp(zs, [870, 920, 1450, 1600], [30, 17, 16, 10])
    out: list[tuple[int, Tube]] = [
        (Tissue.VERTEBRA, Tube.from_knots("spine", zs, 0.0, ys, radius, np.minimum(radius, 17)))
    ]
    for zd in np.arange(900, 1560, 32.0):  # intervertebral discs, 8 mm high
        r = float(np.interp(zd, [870, 920, 1450, 1600], [30, 17, 16, 10]))
        y = float(spine_y(zd))
        out.append((Tissue.DISC, Tube.from_knots("disc", [zd - 4, zd + 4], 0.0, y, r - 1, min(r, 17) - 1)))
    canal_y = ys - np.interp(zs, [870, 1600], [22, 16])
    out.append((Tissue.FLUID, Tube.from_knots("spinal canal", zs, 0.0, canal_y, 8.0, 7.0)))
    cord = zs >= 1080  # the cord ends (conus) around the first lumbar vertebra
    out.append((Tissue.CORD, Tube.from_knots("cord", zs[cord], 0.0, canal_y[cord], 4.5, 4.0)))
    for s in (-1.0, 1.0):
        out.append((Tissue.MARROW, Tube.from_knots("femur", [480, 880], s * 94.0, 0.0, 13.0, 13.0)))
        out.append((Tissue.MARROW, Tube.from_knots("tibia", [90, 470], s * 97.0, 12.0, 11.0, 11.0)))
        out.append((Tissue.MARROW, Tube.from_knots("humerus", [1110, 1390], s * 205.0, 0.0, 10.0, 10.0)))
    return out


def paint_body(grid: Grid) -> np.ndarray:
    """The tissue map (uint8, RAS) of the whole body on ``grid``.

    Layers are drawn part by part: skin (outer 2 mm), fat (down to each part's ``fat_mm``),
    muscle, then organs, bones and spine only where body is already present.
    """
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    for depth, code in ((0.0, Tissue.SKIN), (2.0, Tissue.FAT), (None, Tissue.MUSCLE)):
        for part in BODY_PARTS:
            tube = part.inset(depth if depth is not None else 2.0 + part.fat_mm)
            drawn = tube_mask(grid, tube)
            if drawn is not None:
                box, mask = drawn
                tissue[box][mask] = code
    layers: list[tuple[int, tuple[tuple[slice, ...], np.ndarray] | None]] = [
        (code, _ellipsoid_mask(grid, c, s)) for code, c, s in _ORGANS
    ]
    layers += [(code, tube_mask(grid, tube)) for code, tube in _bones_and_spine()]
    for code, drawn in layers:
        if drawn is None:
            continue
        box, mask = drawn
        view = tissue[box]
        view[mask & (view != Tissue.AIR)] = code
    return tissue


# --- Surfaces and nerves -----------------------------------------------------------------------


def skin_point(part: Tube, z: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """A point on a part's skin at height ``z`` and angle ``theta``, and the outward normal there."""
    cx, cy, a, b = part.at(z)
    point = np.array([cx + a * np.cos(theta), cy + b * np.sin(theta), z])
    normal = np.array([b * np.cos(theta), a * np.sin(theta), 0.0])
    return point, normal / np.linalg.norm(normal)


@dataclass(frozen=True, eq=False)
class Nerve:
    """A nerve path as a polyline (mm), with a weight for how often large tumours grow along it."""

    name: str
    points: np.ndarray  # (n, 3)
    weight: float

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())

    def at(self, s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points and unit tangents at arc lengths ``s`` (mm), shape (..., 3) each."""
        seg = np.diff(self.points, axis=0)
        seg_len = np.linalg.norm(seg, axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg_len)])
        s = np.clip(np.asarray(s, float), 0.0, cum[-1])
        k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
        t = (s - cum[k]) / seg_len[k]
        point = self.points[k] + t[..., None] * seg[k]
        return point, seg[k] / seg_len[k][..., None]


def _nerves() -> tuple[Nerve, ...]:
    out: list[Nerve] = []
    for side, s in (("left", -1.0), ("right", 1.0)):
        zs = np.arange(900, 1560, 40.0)
        beside_spine = np.stack([np.full_like(zs, 32 * s), spine_y(zs) - 4, zs], 1)
        out.append(Nerve(f"{side} paraspinal", beside_spine, 0.2))
        out.append(Nerve(f"{side} neck", np.array(
            [[24 * s, -12, 1600], [26 * s, -15, 1560], [30 * s, -8, 1500], [45 * s, 0, 1460]]), 0.2))
        out.append(Nerve(f"{side} vagus", np.array(
            [[28 * s, 12, 1600], [28 * s, 15, 1520], [22 * s, 18, 1440], [18 * s, 15, 1330]]), 0.05))
        out.append(Nerve(f"{side} brachial plexus and arm", np.array([
            [25 * s, -25, 1500], [70 * s, -10, 1450], [130 * s, 0, 1410], [180 * s, 0, 1390],
            [203 * s, 0, 1350], [207 * s, 5, 1150], [210 * s, 5, 1000], [213 * s, 5, 860]]), 0.15))
        out.append(Nerve(f"{side} lumbosacral plexus and sciatic", np.array([
            [25 * s, -62, 1050], [40 * s, -55, 980], [55 * s, -50, 920], [75 * s, -40, 880],
            [90 * s, -30, 850], [95 * s, -25, 700], [97 * s, -20, 540], [100 * s, -20, 420],
            [103 * s, -15, 200], [104 * s, -10, 80]]), 0.3))
        out.append(Nerve(f"{side} femoral", np.array([
            [35 * s, -25, 1050], [60 * s, 10, 950], [80 * s, 45, 870], [88 * s, 40, 750],
            [95 * s, 30, 600]]), 0.1))
        for z0 in (1190.0, 1260.0, 1330.0):
            phi = np.linspace(-1.35, 1.1, 10)
            _, _, a, b = BODY_PARTS[0].at(z0)
            # Around the chest wall, 28 mm deep, sloping down 30 mm towards the front like a rib.
            slope = z0 - 30 * (phi + 1.35) / 2.45
            pts = np.stack([s * (a - 28) * np.cos(phi), (b - 28) * np.sin(phi), slope], 1)
            out.append(Nerve(f"{side} intercostal {int(z0)}", pts, 0.02))
    return tuple(out)


NERVES: tuple[Nerve, ...] = _nerves()
"""Nerve paths, both sides: paraspinal, neck, vagus, brachial plexus and arm, lumbosacral plexus
and sciatic, femoral, intercostal."""



# --- Bright mimics (realistic phantoms) ---------------------------------------------------------

# Lymph node stations: (centre mm, spread mm, count range) per side (x mirrored) or midline.
_NODE_STATIONS = [
    ((34, 2, 1520), (10, 10, 45), (3, 7)),  # cervical, along the jugular
    ((150, 0, 1365), (18, 18, 30), (2, 5)),  # axillary
    ((68, 50, 875), (15, 10, 20), (3, 6)),  # inguinal
    ((45, 5, 950), (12, 12, 40), (1, 4)),  # iliac, along the vessels
    ((96, -40, 490), (6, 6, 12), (0, 2)),  # popliteal
]
_PARA_AORTIC = ((0, -25, 1050), (25, 6, 50), (1, 4))
# Joint fluid, largest extent per side (x mirrored): each joint holds a random fraction of it.
_JOINTS = [
    ((96, 5, 478), (24, 16, 4)),  # knees
    ((96, 22, 515), (14, 5, 16)),  # suprapatellar recesses
    ((97, 0, 870), (12, 12, 4)),  # hips
    ((198, 0, 1398), (10, 10, 5)),  # shoulders
    ((92, 0, 92), (12, 10, 3)),  # ankles
]


def _veins() -> list[tuple[int, Tube]]:
    """Slow-flow veins bright on STIR: femoral, great saphenous, popliteal, iliac, jugular, arm."""
    out = []
    for s in (-1.0, 1.0):
        out.append((Tissue.VEIN, Tube.from_knots("femoral vein", [500, 700, 880, 960], s * np.array(
            [92, 86, 78, 45.0]), [-25, 10, 42, 5], 4.5, 4.5)))
        out.append((Tissue.VEIN, Tube.from_knots("saphenous vein", [100, 480, 880], s * np.array(
            [70, 60, 75.0]), [20, -30, 55], 2.2, 2.2)))
        out.append((Tissue.VEIN, Tube.from_knots("popliteal vein", [380, 600], s * 97.0, -35.0, 4.0, 4.0)))
        out.append((Tissue.VEIN, Tube.from_knots("jugular vein", [1440, 1600], s * np.array([24, 32.0]),
                                                 [10, 0], 5.5, 5.0)))
        out.append((Tissue.VEIN, Tube.from_knots("basilic vein", [1000, 1300], s * np.array([200, 196.0]),
                                                 20.0, 2.5, 2.5)))
    return out


# Fixed bright structures: (tissue, centre, semi-axes), drawn where body is.
_FIXED_MIMICS = [
    (Tissue.BOWEL, (-55, 35, 1150), (38, 28, 40)),  # stomach with fluid
    (Tissue.GLAND, (55, -5, 1585), (13, 18, 24)),  # parotids
    (Tissue.GLAND, (-55, -5, 1585), (13, 18, 24)),
    (Tissue.GLAND, (36, 38, 1550), (9, 11, 8)),  # submandibular glands
    (Tissue.GLAND, (-36, 38, 1550), (9, 11, 8)),
    (Tissue.GLAND, (15, 28, 1470), (7, 8, 17)),  # thyroid lobes
    (Tissue.GLAND, (-15, 28, 1470), (7, 8, 17)),
]


# Nerves thick enough to show on STIR (mildly bright), as (name prefix, radius mm).
_VISIBLE_NERVES = (("brachial plexus", 3.0), ("lumbosacral plexus", 4.0), ("femoral", 2.5))


def _nerve_masks(grid: Grid) -> list[tuple[tuple[slice, ...], np.ndarray] | None]:
    """The visible nerves as chains of thin spheroids, one per polyline segment."""
    out = []
    for nerve in NERVES:
        radius = next((r for prefix, r in _VISIBLE_NERVES if nerve.name.split(" ", 1)[1].startswith(prefix)), None)
        if radius is None:
            continue
        for p, q in zip(nerve.points[:-1], nerve.points[1:]):
            half = float(np.linalg.norm(q - p)) / 2
            lobe = Spheroid((p + q) / 2, (q - p) / (2 * half), half + radius, radius)
            box = grid.box(*spheroid_box(lobe))
            out.append(None if box is None else (box, spheroid_q(grid, box, lobe) <= 1.0))
    return out


def paint_mimics(grid: Grid, tissue: np.ndarray, rng: np.random.Generator) -> None:
    """Draw the bright structures a lesion model must reject into ``tissue`` (in place).

    Lateral ventricles of the brain (CSF), the plexuses and large nerves, lymph nodes at their stations (randomly placed and sized), slow-flow veins, small-bowel loops
    and the stomach with fluid, joint fluid, parotid, submandibular and thyroid glands. Drawn only
    where there is body and not over bone, lungs, brain or CSF.
    """
    protect = np.array([Tissue.AIR, Tissue.BONE, Tissue.MARROW, Tissue.LUNG, Tissue.BRAIN, Tissue.FLUID,
                        Tissue.VERTEBRA, Tissue.DISC, Tissue.CORD])
    layers: list[tuple[int, tuple[tuple[slice, ...], np.ndarray] | None]] = [
        (code, _ellipsoid_mask(grid, c, s)) for code, c, s in _FIXED_MIMICS
    ]
    layers += [(code, tube_mask(grid, tube)) for code, tube in _veins()]
    layers += [(Tissue.NERVE, drawn) for drawn in _nerve_masks(grid)]
    for centre, semi in _JOINTS:
        for side in (-1.0, 1.0):
            scale = float(rng.uniform(0.3, 1.0))
            layers.append((Tissue.JOINT, _ellipsoid_mask(
                grid, np.multiply(centre, (side, 1, 1)), np.multiply(semi, (scale, scale, 1.0)))))
    for _ in range(int(rng.integers(25, 40))):  # small-bowel loops in the lower abdomen
        centre = rng.uniform((-85, -5, 960), (85, 60, 1080))
        semi = rng.uniform(5, 13, 3) * (1, 1, float(rng.uniform(0.8, 1.8)))
        layers.append((Tissue.BOWEL, _ellipsoid_mask(grid, centre, semi)))
    stations = [(c, sp, n, s) for c, sp, n in _NODE_STATIONS for s in (-1.0, 1.0)] + [(*_PARA_AORTIC, 1.0)]
    for centre, spread, (lo, hi), side in stations:
        for _ in range(int(rng.integers(lo, hi + 1))):
            c = (np.array(centre, float) + rng.normal(0.0, 1.0, 3) * spread) * (side, 1, 1)
            r = float(np.exp(rng.uniform(np.log(3.0), np.log(8.0))))
            layers.append((Tissue.LYMPH, _ellipsoid_mask(grid, c, (r, r, r * float(rng.uniform(1.0, 2.0))))))
    for code, drawn in layers:
        if drawn is None:
            continue
        box, mask = drawn
        view = tissue[box]
        view[mask & ~np.isin(view, protect)] = code
    for side in (-1.0, 1.0):  # lateral ventricles, inside the brain only
        drawn = _ellipsoid_mask(grid, (side * 9, 10, 1715), (6, 28, 14))
        if drawn is not None:
            box, mask = drawn
            view = tissue[box]
            view[mask & (view == Tissue.BRAIN)] = Tissue.FLUID
