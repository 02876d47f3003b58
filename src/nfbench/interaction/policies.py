"""Click policies: where the simulated user clicks next, given the current prediction (DESIGN §2).

Every policy looks at the *error* of the current prediction, ``pred XOR truth`` with the ``ignore``
voxels removed (they count neither as missed nor as wrongly segmented), inside an optional scope
box.
Nothing full-size is labelled or distance-transformed: the error voxels are listed in one slab-wise
pass, 26-connected components (``cc3d``) are labelled on the boxes of clusters of those voxels, and
the distance transform (``edt``) runs on the chosen component's bounding box only. On a 72 M-voxel
scan with a few hundred scattered errors one call takes about 0.1 s
(``benchmarks/bench_policies.py``).

Boundary convention: voxels outside the volume count as background, i.e. a component that touches
the volume border is treated as if the volume were padded with zeros (this is what the CVPR 2025
challenge code does when it pads the component's crop with zeros before its distance transform).

The component is the error *inside the scope*: with a box, its faces bound the component too.

Ties. The largest component is, on equal sizes, the one whose first voxel comes first in raster
(C) order of the global index, like the lowest ``cc3d`` label. Inside the component the two centre
policies differ on purpose:

- ``center`` (depth in mm) takes the first deepest voxel in raster order and uses no random draw;
- ``center-voxel`` is the CVPR 2025 challenge's click exactly (``CVPR25_iter_eval.py``,
  ``compute_edt`` and ``sample_coord``): the depth is scipy's Euclidean distance in voxel units on
  the component's bounding box padded by ``max(crop // 4, 1)`` zeros per side; when that padded crop
  has more than :data:`_CVPR_HALVE_ABOVE` voxels it is first 2x2x2 block-reduced with ``max``
  (zero-padded at the far end) and every voxel takes its block's distance; then, on *every* click,
  ``np.random.seed(42)`` and ``np.random.choice`` pick one of the voxels at the maximum depth,
  listed in raster order. The draw uses a private ``RandomState(42)``, so it is the same function
  of the tie count without touching NumPy's global generator, and it ignores ``rng``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

import edt
import numpy as np

from nfbench.components import connected_components
from nfbench.bbox import mask_bbox
from nfbench.types import BoolMask, BoxSlices, Click, Spacing

__all__ = ["DEFAULT_PATCH_MM", "POLICIES", "next_clicks", "patch_voxels"]

POLICIES: tuple[str, ...] = ("center", "center-voxel", "uniform", "edt-power", "patch")

#: The original's patch in mm, in our canonical RAS axes: SW-FastEdit's 512 x 512 x 16 voxels of its
#: (R, S, A) grid at 0.625 x 0.625 x 7.8 mm, i.e. 320 mm (R) x 124.8 mm (A) x 320 mm (S).
DEFAULT_PATCH_MM: tuple[float, float, float] = (320.0, 124.8, 320.0)

#: Padded crops of more voxels than this are halved before the ``center-voxel`` distance transform,
#: as in the CVPR 2025 challenge code (``60000000`` there).
_CVPR_HALVE_ABOVE = 60_000_000
_CVPR_SEED = 42

# Two mm distances closer than this (relative) are the same distance: float32 EDT values of points
# that are geometrically equally deep can differ in their last bits.
_MM_TIE_RTOL = 1e-6

# Error voxels are grouped by clusters of _BLOCK^3-voxel blocks before labelling; past _MAX_CLUSTERS
# clusters one labelling of the whole error box is cheaper than a Python loop over the clusters.
_BLOCK = 8
_MAX_CLUSTERS = 400
_SLAB_VOXELS = 1 << 21  # voxels per slab of the error pass (2 MB of bool)


def next_clicks(
    pred: BoolMask,
    truth: BoolMask,
    *,
    spacing: Spacing,
    rng: np.random.Generator,
    policy: str = "center",
    ignore: BoolMask | None = None,
    box: BoxSlices | None = None,
    alpha: float = 8.0,
    patch_size: tuple[int, int, int] | None = None,
) -> list[Click]:
    """The clicks of the next interaction, in global voxel indices; empty when there is no error.

    Parameters
    ----------
    pred, truth
        Current prediction and ground truth, same shape (the canonical grid or a crop of it).
    spacing
        Voxel size in mm along each axis; ``center`` and ``edt-power`` measure depth in mm so that
        a thick-slice axis does not dominate where the click goes.
    rng
        Source of every random draw (``uniform``, ``edt-power``, ``patch``); same seed, same clicks.
    policy
        One of :data:`POLICIES`:

        ``center``
            Largest 26-connected error component (ties: first voxel in raster order), voxel farthest
            from its boundary in mm (ties: raster order).
        ``center-voxel``
            The CVPR 2025 challenge's click: the same component, distance in voxel units, the
            deepest voxel drawn among ties by the challenge's reseeded ``np.random.choice`` (see
            the module docstring); ``rng`` is not used.
        ``uniform``
            Uniformly random voxel of the largest error component.
        ``edt-power``
            Component drawn with probability proportional to its size, then a voxel with probability
            proportional to EDT(mm) ** ``alpha`` (nnInteractive's simulation).
        ``patch``
            The original paper's rule as intended: the patch (tiles of ``patch_size`` from the array
            origin, clipped at its end) with the worst Dice gets one positive click (uniform over
            its false negatives) and one negative click (uniform over its false positives), each
            if there is one. Patches with empty truth and empty prediction have Dice 1 and are never
            chosen; ties go to the first patch in raster order.
    ignore
        Voxels that are neither false negative nor false positive (e.g. other lesions).
    box
        Scope: only errors inside this box are considered (for ``patch``, the tiles are cut to it).
    alpha
        Exponent of ``edt-power``; 1 draws in proportion to depth, large values approach the centre.
    patch_size
        Tile size of ``patch`` in voxels; default :data:`DEFAULT_PATCH_MM` converted to this
        grid by :func:`patch_voxels`.

    Returns
    -------
    list of Click
        One click (two at most for ``patch``); ``positive`` is the ground truth at the clicked
        voxel.
    """
    if policy not in POLICIES:
        close = difflib.get_close_matches(policy, POLICIES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown click policy {policy!r}.{hint} Available: {', '.join(POLICIES)}")
    pred, truth, ignore = _check_masks(pred, truth, ignore)
    spacing = _check_spacing(spacing)
    scope = _check_box(box, truth.shape)
    if policy == "patch":
        size = patch_voxels(DEFAULT_PATCH_MM, spacing) if patch_size is None else patch_size
        return _patch_clicks(pred, truth, ignore, scope, rng=rng, patch_size=_check_patch(size))
    if policy == "edt-power" and not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"edt-power needs a finite alpha >= 0, got {alpha}")

    found = _error_voxels(pred, truth, ignore, scope)
    if found is None:
        return []
    ijk, labels, counts = found
    if policy == "edt-power":
        label = 1 + _weighted_index(counts.astype(np.float64), rng)
    else:
        label = _largest(labels, counts)
    members = np.flatnonzero(labels == label)  # in raster order
    if policy == "uniform":
        chosen = members[int(rng.integers(members.size))]
        voxel = tuple(int(s.start + c[chosen]) for s, c in zip(scope, ijk))
        return [Click(voxel, bool(truth[voxel]))]

    points = tuple(c[members] for c in ijk)
    lo = tuple(int(p.min()) for p in points)
    inside = tuple(p - l for p, l in zip(points, lo))  # component voxels in its box, raster order
    extent = tuple(int(p.max()) + 1 for p in inside)
    if policy == "center-voxel":
        pick = _cvpr_center(inside, extent)
        offset = tuple(int(p[pick]) for p in inside)
    else:
        component = np.zeros(extent, bool)
        component[inside] = True
        if policy == "center":
            local = _deepest(component, spacing, rtol=_MM_TIE_RTOL)
        else:  # edt-power
            depth = edt.edt(component, anisotropy=spacing, black_border=True).ravel()
            depth = depth.astype(np.float64)
            # normalised first so that a large alpha cannot overflow; 0 ** 0 == 1 would give the
            # voxels outside the component weight when alpha == 0
            weights = (depth / depth.max()) ** alpha
            weights[depth == 0] = 0.0
            local = _weighted_index(weights, rng)
        offset = np.unravel_index(local, extent)
    voxel = tuple(int(s.start + l + v) for s, l, v in zip(scope, lo, offset))
    return [Click(voxel, bool(truth[voxel]))]


def patch_voxels(size_mm: Sequence[float], spacing: Sequence[float]) -> tuple[int, int, int]:
    """A patch given in mm as whole voxels of a grid: nearest count per axis, at least one.

    The original grid (0.625 x 7.8 x 0.625 mm) turns :data:`DEFAULT_PATCH_MM` back into the
    original's 512 x 16 x 512 voxels; the 2.5 mm ``small`` phantom gets 128 x 16 x 128.
    """
    sizes, steps = tuple(float(m) for m in size_mm), tuple(float(s) for s in spacing)
    if len(sizes) != 3 or not all(math.isfinite(m) and m > 0 for m in sizes):
        raise ValueError(f"patch size must be three positive lengths in mm, got {size_mm}")
    if len(steps) != 3 or not all(math.isfinite(s) and s > 0 for s in steps):
        raise ValueError(f"spacing must be three positive sizes in mm, got {spacing}")
    voxels = tuple(max(1, math.floor(m / s + 0.5)) for m, s in zip(sizes, steps))
    return voxels  # type: ignore[return-value]


def _check_masks(
    pred: BoolMask, truth: BoolMask, ignore: BoolMask | None
) -> tuple[BoolMask, BoolMask, BoolMask | None]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if truth.ndim != 3 or pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth must be 3D arrays of one shape, got {pred.shape} and {truth.shape}"
        )
    if ignore is not None:
        ignore = np.asarray(ignore)
        if ignore.shape != truth.shape:
            raise ValueError(f"ignore has shape {ignore.shape}, truth {truth.shape}")
        ignore = ignore.astype(bool, copy=False)
    return pred.astype(bool, copy=False), truth.astype(bool, copy=False), ignore


def _check_spacing(spacing: Spacing) -> Spacing:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be three positive sizes in mm, got {spacing}")
    return values  # type: ignore[return-value]


def _check_box(box: BoxSlices | None, shape: tuple[int, ...]) -> BoxSlices:
    if box is None:
        return tuple(slice(0, n) for n in shape)  # type: ignore[return-value]
    if len(box) != 3:
        raise ValueError(f"box must be three slices, got {box}")
    clipped = tuple(slice(*s.indices(n)[:2]) for s, n in zip(box, shape))
    if any(s.step not in (None, 1) for s in box):
        raise ValueError(f"box slices must have step 1, got {box}")
    return clipped  # type: ignore[return-value]


def _check_patch(patch_size: tuple[int, int, int]) -> tuple[int, int, int]:
    size = tuple(int(p) for p in patch_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"patch_size must be three positive voxel counts, got {patch_size}")
    return size  # type: ignore[return-value]


def _error_voxels(
    pred: BoolMask, truth: BoolMask, ignore: BoolMask | None, scope: BoxSlices
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray] | None:
    """Error voxels of the scope and their 26-connected components; None if there is no error.

    Returns the scope-local coordinates of every error voxel (one array per axis, raster order), the
    component label of each (1..n) and the voxel count of each component (index ``label - 1``).

    Errors are sparse in a whole-body scan, so nothing full-size is labelled: the error voxels are
    listed slab by slab, grouped by 26-connected clusters of coarse blocks (every voxel component
    lies inside one cluster, since 26-neighbour voxels sit in the same or 26-neighbour blocks), and
    each cluster is labelled on its own bounding box.
    """
    flat = _error_indices(pred[scope], truth[scope], None if ignore is None else ignore[scope])
    if flat.size == 0:
        return None
    shape = tuple(s.stop - s.start for s in scope)
    ijk = np.unravel_index(flat, shape)
    block_of = tuple(c // _BLOCK for c in ijk)
    coarse = np.zeros(tuple(-(-n // _BLOCK) for n in shape), bool)
    coarse[block_of] = True
    clusters, n_clusters = connected_components(coarse, connectivity=26)
    cluster_of = clusters[block_of]
    labels = np.empty(flat.size, np.int64)
    if n_clusters > _MAX_CLUSTERS:  # very fragmented error: one labelling of its box is cheaper
        _label_group(ijk, np.arange(flat.size), labels, 0)
        return ijk, labels, np.bincount(labels)[1:]
    # voxels grouped by cluster, in raster order inside each
    order = np.argsort(cluster_of, kind="stable")
    ends = np.cumsum(np.bincount(cluster_of, minlength=n_clusters + 1)[1:])
    start, offset = 0, 0
    for end in ends:
        offset += _label_group(ijk, order[start:end], labels, offset)
        start = end
    return ijk, labels, np.bincount(labels)[1:]


def _error_indices(pred: BoolMask, truth: BoolMask, ignore: BoolMask | None) -> np.ndarray:
    """Flat (C-order) indices of ``pred != truth`` outside ``ignore``, computed in slabs.

    Slabs along the first axis reuse one small buffer instead of a full-size temporary, which keeps
    the pass in cache and avoids page-faulting a fresh 72 MB array on every click.
    """
    plane = math.prod(truth.shape[1:])
    rows = max(1, _SLAB_VOXELS // max(1, plane))
    buffer = np.empty((rows, *truth.shape[1:]), bool)
    parts = []
    for lo in range(0, truth.shape[0], rows):
        hi = min(lo + rows, truth.shape[0])
        out = buffer[: hi - lo]
        np.not_equal(pred[lo:hi], truth[lo:hi], out=out)
        if ignore is not None:
            np.greater(out, ignore[lo:hi], out=out)  # error & ~ignore
        found = np.flatnonzero(out)
        if found.size:
            parts.append(found + lo * plane)
    return np.concatenate(parts) if parts else np.empty(0, np.intp)


def _label_group(
    ijk: tuple[np.ndarray, ...], members: np.ndarray, labels: np.ndarray, offset: int
) -> int:
    """Label the 26-connected components of the voxels ``members`` on their bounding box.

    Writes ``offset + local label`` into ``labels[members]`` and returns the number of components.
    """
    points = tuple(c[members] for c in ijk)
    lo = tuple(int(p.min()) for p in points)
    local = tuple(p - l for p, l in zip(points, lo))
    crop = np.zeros(tuple(int(p.max()) + 1 for p in local), bool)
    crop[local] = True
    grid, n = connected_components(crop, connectivity=26)
    labels[members] = grid[local].astype(np.int64) + offset
    return int(n)


def _largest(labels: np.ndarray, counts: np.ndarray) -> int:
    """Largest component's label; on ties, the one whose first voxel comes first in raster order."""
    tied = np.flatnonzero(counts == counts.max()) + 1
    if tied.size == 1:
        return int(tied[0])
    # ``labels`` follows the voxels' raster order, so a component's first voxel is its first entry.
    firsts = [int(np.argmax(labels == label)) for label in tied]
    return int(tied[int(np.argmin(firsts))])


def _deepest(component: BoolMask, anisotropy: Spacing, *, rtol: float) -> int:
    """Flat index of the component voxel farthest from its boundary (raster order on ties)."""
    depth = edt.edt(component, anisotropy=anisotropy, black_border=True)
    top = depth.max()
    return int(np.argmax(depth >= top * (1.0 - rtol)))


def _cvpr_center(inside: tuple[np.ndarray, ...], extent: tuple[int, ...]) -> int:
    """Which of the component's voxels (raster order) the CVPR 2025 challenge clicks.

    ``inside`` holds the voxels' coordinates in the component's bounding box of shape ``extent``.
    The challenge pads that box with ``max(int(0.25 * n), 1)`` zeros per side, so the box's outside
    is background (``black_border``). Above :data:`_CVPR_HALVE_ABOVE` padded voxels, blocks of 2^3
    voxels of the *padded* crop (blocks start at its origin) become one voxel, set where any of
    its voxels is in the component; scipy then finds background only inside that array, hence no
    black border there (a padded crop that large has an axis of over 390 voxels, whose padding of
    at least 2 voxels on each side holds whole background blocks).
    """
    pad = tuple(max(n // 4, 1) for n in extent)  # int(0.25 * n) for a voxel count n
    padded = tuple(n + 2 * p for n, p in zip(extent, pad))
    if math.prod(padded) > _CVPR_HALVE_ABOVE:
        blocks = tuple((c + p) // 2 for c, p in zip(inside, pad))
        coarse = np.zeros(tuple(-(-n // 2) for n in padded), bool)
        coarse[blocks] = True
        depth = edt.edt(coarse, black_border=False)[blocks]
    else:
        component = np.zeros(extent, bool)
        component[inside] = True
        depth = edt.edt(component, black_border=True)[inside]
    # squared voxel distances are integers, so float32 depths tie exactly where scipy's float64
    # ones do (distinct below a depth of 2048 voxels, far beyond any scan)
    tied = np.flatnonzero(depth == depth.max())
    return int(tied[np.random.RandomState(_CVPR_SEED).choice(tied.size)])


def _weighted_index(weights: np.ndarray, rng: np.random.Generator) -> int:
    """Index drawn with probability proportional to ``weights`` (one uniform draw, inverse CDF)."""
    cumulative = np.cumsum(weights)
    position = rng.random() * cumulative[-1]
    index = int(np.searchsorted(cumulative, position, side="right"))
    index = min(index, weights.size - 1)
    while weights[index] == 0:  # only reachable through rounding at the very top of the CDF
        index -= 1
    return index


def _patch_clicks(
    pred: BoolMask,
    truth: BoolMask,
    ignore: BoolMask | None,
    scope: BoxSlices,
    *,
    rng: np.random.Generator,
    patch_size: tuple[int, int, int],
) -> list[Click]:
    """The ``patch`` policy: worst-Dice tile, one uniform FN and one uniform FP click in it."""
    p, t = pred[scope], truth[scope]
    if ignore is not None:
        keep = ~ignore[scope]
        p, t = p & keep, t & keep
    # Tiles without any prediction or truth have Dice 1: only tiles meeting this box can be worse.
    occupied = mask_bbox(p | t)
    if occupied is None:
        return []
    worst, worst_dice = None, 1.0
    ranges = []
    for axis in range(3):
        lo = scope[axis].start + occupied[axis].start
        hi = scope[axis].start + occupied[axis].stop
        size = patch_size[axis]
        ranges.append(range(lo // size, (hi - 1) // size + 1))
    for i in ranges[0]:
        for j in ranges[1]:
            for k in ranges[2]:
                tile = _tile_in_scope((i, j, k), patch_size, scope)
                tp = int(np.count_nonzero(p[tile] & t[tile]))
                total = int(np.count_nonzero(p[tile])) + int(np.count_nonzero(t[tile]))
                d = 1.0 if total == 0 else 2.0 * tp / total
                if d < worst_dice:
                    worst, worst_dice = tile, d
    if worst is None:
        return []
    clicks = []
    for positive, wrong in ((True, t[worst] & ~p[worst]), (False, p[worst] & ~t[worst])):
        flat = np.flatnonzero(wrong)
        if flat.size:
            ijk = np.unravel_index(flat[int(rng.integers(flat.size))], wrong.shape)
            voxel = tuple(int(s.start + w.start + v) for s, w, v in zip(scope, worst, ijk))
            clicks.append(Click(voxel, positive))
    return clicks


def _tile_in_scope(
    index: tuple[int, int, int], size: tuple[int, int, int], scope: BoxSlices
) -> BoxSlices:
    """Tile ``index`` of the global tiling, cut to the scope, in scope-local coordinates."""
    out = []
    for i, n, s in zip(index, size, scope):
        lo, hi = max(i * n, s.start), min((i + 1) * n, s.stop)
        out.append(slice(lo - s.start, hi - s.start))
    return tuple(out)  # type: ignore[return-value]
