"""A model-grid answer kept on the native grid region by region, optionally only its clicked components.

A sliding-window model changes its answer, after a click, only where it re-blended windows
(:attr:`~nfbench.models.blocks.sliding_window.WindowCache.blended`). :class:`NativeAnswer` keeps
the answer on the model grid and its nearest-neighbour image on the native grid, and after each
click maps back only the native voxels over the model voxels that changed, found by comparing
the model-grid answer inside the boxes that may have changed
(:meth:`~nfbench.models.blocks.grids.GridMap.to_native_box`), so a click costs the size of its
windows on the model grid and of its change on the native one, not of the scan; the native answer and the box that changed are exactly those of mapping
the whole model grid back and comparing it with the previous answer.

``keep_clicked``: the answer is only the 26-connected components of the model's mask that hold a
positive click of the session (empty without one). In lesion scenarios a model otherwise segments
every lesion-like structure of the scan, and each of them counts against the lesion being clicked:
a feasibility run showed Dice after one click falling from 0.99 (kept)
to 0.73 (whole mask). Components are those of the model grid, around the click's model voxel
(:meth:`~nfbench.models.blocks.grids.GridMap.index_to_model`, the voxel whose value the clicked
native voxel shows): the native answer, its nearest-neighbour image, has the same components
wherever the model grid is no finer than the native one (each model voxel a block of native
voxels), as for the sliding-window models here. A click on background (its model voxel outside
the mask) keeps nothing. Each component is labelled in a box around the click that grows until
the component lies inside it, never over the whole grid unless the component spans it, and only
when the model's mask changed near it since the last answer; the answer then changes only inside
the boxes of components that appeared or disappeared.

``honour_clicks``: the model voxel of every positive click of the session is lesion in the
answer, whatever the model says there (the user has just said it is). The network's margin at a
click can stay below zero however often it is clicked (a dim lesion, a lesion of one voxel): without
this the answer there is empty and its Dice 0 at every interaction. Applied before ``keep_clicked``,
so the clicked voxel's component always holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from nfbench.bbox import mask_bbox, union_bbox
from nfbench.components import connected_components
from nfbench.models.base import Prediction
from nfbench.models.blocks.grids import GridMap
from nfbench.types import BoolMask, BoxSlices, Index3

__all__ = ["NativeAnswer", "clicked_components"]

Raw = Callable[[BoxSlices], BoolMask]
"""The model's own mask inside a box of the model grid."""
_START_RADIUS = 16  # model voxels around a click: a small lesion's component fits at once


def _shift(box: BoxSlices, origin: Sequence[int]) -> BoxSlices:
    return tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, origin))  # type: ignore[return-value]


def _component_at(raw: Raw, shape: Sequence[int], seed: Index3) -> tuple[BoxSlices, BoolMask] | None:
    """The component of ``raw`` holding ``seed`` (its box, its mask there), or None when ``seed`` is background.

    A component found in a box is the whole component once it touches none of the box's faces
    that lie inside the grid; until then the box doubles across each face it touches.
    """
    box = tuple(slice(max(v - _START_RADIUS, 0), min(v + _START_RADIUS + 1, n)) for v, n in zip(seed, shape))
    while True:
        mask = raw(box)  # type: ignore[arg-type]
        local = tuple(v - b.start for v, b in zip(seed, box))
        if not mask[local]:
            return None
        labels, _ = connected_components(mask)
        component = labels == labels[local]
        grown = []
        for axis, (b, n) in enumerate(zip(box, shape)):
            width = b.stop - b.start
            lo = max(b.start - width, 0) if b.start > 0 and component.take(0, axis).any() else b.start
            hi = min(b.stop + width, n) if b.stop < n and component.take(-1, axis).any() else b.stop
            grown.append(slice(lo, hi))
        if tuple(grown) == box:
            inner = mask_bbox(component)
            assert inner is not None  # it holds the seed
            return _shift(inner, [b.start for b in box]), component[inner]
        box = tuple(grown)


def clicked_components(raw: Raw, shape: Sequence[int], seeds: Iterable[Index3],
                       known: Sequence[tuple[BoxSlices, BoolMask]] = ()) -> list[tuple[BoxSlices, BoolMask]]:
    """The distinct 26-connected components of a mask that hold a seed: each one's box and its mask there.

    ``raw(box)`` gives the mask inside a box of a grid of ``shape``; seeds on background are skipped.
    ``known`` components (box, mask) are taken as they are where they hold a seed, without labelling.
    """
    found: list[tuple[BoxSlices, BoolMask]] = []
    for seed in seeds:
        seed = tuple(int(v) for v in seed)  # type: ignore[assignment]
        if any(_holds(c, seed) for c in found):
            continue
        component = next((c for c in known if _holds(c, seed)), None) or _component_at(raw, shape, seed)
        if component is not None:
            found.append(component)
    return found


def _holds(component: tuple[BoxSlices, BoolMask], index: Sequence[int]) -> bool:
    box, mask = component
    return all(b.start <= v < b.stop for v, b in zip(index, box)) and bool(
        mask[tuple(v - b.start for v, b in zip(index, box))])


class NativeAnswer:
    """The session's answer on the model grid and on the native grid, updated where the model's mask changed.

    Parameters
    ----------
    grid : GridMap
        The model grid's map to the native grid.
    native_shape : tuple of int
        The native volume's shape (the grid's crop lies inside it).
    keep_clicked : bool
        Answer only the components of the mask that hold a positive click (see the module).
    honour_clicks : bool
        A positive click's model voxel is always in the answer (see the module).
    """

    def __init__(self, grid: GridMap, native_shape: Sequence[int], *, keep_clicked: bool = False,
                 honour_clicks: bool = False) -> None:
        self.grid, self.keep_clicked, self.honour_clicks = grid, bool(keep_clicked), bool(honour_clicks)
        self.model = np.zeros(grid.shape, bool)
        """The answer on the model grid."""
        self.native = np.zeros(tuple(native_shape), bool)
        """The last answer on the native grid (what :meth:`update` returned, assembled)."""
        self._stale: list[BoxSlices] = []
        self._components: list[tuple[BoxSlices, BoolMask]] = []
        self._honoured: set[Index3] = set()

    def reset(self, raw_box: BoxSlices | None) -> None:
        """The answer is empty again; ``raw_box`` holds every voxel of the model's mask now (None: it is empty)."""
        self.model[...] = False
        self.native[...] = False
        self._components = []
        self._honoured = set()
        self._stale = [] if raw_box is None or self.keep_clicked else [raw_box]

    def changed(self, boxes: Iterable[BoxSlices], origin: Sequence[int] = (0, 0, 0)) -> None:
        """Note where the model's mask may have changed: boxes of a grid where model voxel (0, 0, 0) is at ``origin``.

        Clipped to the model grid (padding around it is ignored).
        """
        for box in boxes:
            inner = tuple(slice(max(b.start - o, 0), min(b.stop - o, n)) for b, o, n in zip(box, origin, self.grid.shape))
            if all(s.stop > s.start for s in inner):
                self._stale.append(inner)  # type: ignore[arg-type]

    def update(self, raw: Raw, seeds: Sequence[Index3] = ()) -> Prediction:
        """The new answer as the native box where it differs from the last one (empty box: nothing changed).

        ``raw(box)`` gives the model's mask inside a box of the model grid; ``seeds`` are the model
        voxels of the session's positive clicks (used with ``keep_clicked`` and ``honour_clicks``).
        """
        if self.honour_clicks:
            raw = self._honouring(raw, seeds)
        gone, regions = self._find_components(raw, seeds) if self.keep_clicked else ([], self._stale)
        before = [self.model[box].copy() for box in regions]
        if self.keep_clicked:
            self._paint_components(gone)
        else:
            for box in regions:
                self.model[box] = raw(box)
        self._stale = []
        changed = None
        for box, old in zip(regions, before):
            differs = mask_bbox(old != self.model[box])  # on the model grid: the native voxels to redo lie over it
            if differs is None:
                continue
            native_box = self.grid.native_box_of(_shift(differs, [s.start for s in box]))
            if any(s.stop <= s.start for s in native_box):
                continue  # model voxels no native voxel samples
            new = self.grid.to_native_box(self.model, native_box)
            differs = mask_bbox(new != self.native[native_box])
            if differs is not None:
                changed = union_bbox(changed, _shift(differs, [s.start for s in native_box]))
                self.native[native_box] = new
        if changed is None:
            return Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3)  # type: ignore[arg-type]
        return Prediction(self.native[changed].copy(), changed)

    def _honouring(self, raw: Raw, seeds: Sequence[Index3]) -> Raw:
        """``raw`` with the seeds' voxels set; a seed new since the last answer (or one gone) is a change there."""
        honoured = {tuple(int(v) for v in seed) for seed in seeds}
        self._stale += [tuple(slice(v, v + 1) for v in voxel) for voxel in honoured ^ self._honoured]  # type: ignore[misc]
        self._honoured = honoured  # type: ignore[assignment]

        def with_seeds(box: BoxSlices) -> BoolMask:
            mask = raw(box)
            inside = [tuple(v - b.start for v, b in zip(voxel, box)) for voxel in honoured
                      if all(b.start <= v < b.stop for v, b in zip(voxel, box))]
            if inside:
                mask = mask.copy()
                mask[tuple(np.array(inside).T)] = True
            return mask

        return with_seeds

    def _find_components(self, raw: Raw, seeds: Sequence[Index3]) -> tuple[list[tuple[BoxSlices, BoolMask]],
                                                                            list[BoxSlices]]:
        """Find the clicked components (kept for the next call); returns those that disappeared and
        the boxes of those that appeared or disappeared.

        Where the mask changed but no kept component did, the answer stays as it was.
        """
        # a component whose box, one voxel wider, meets no change is still a component, unchanged
        untouched = [c for c in self._components
                     if not any(all(b.start - 1 < s.stop and s.start < b.stop + 1 for b, s in zip(c[0], stale))
                                for stale in self._stale)]
        found = clicked_components(raw, self.grid.shape, seeds, untouched)
        gone = [c for c in self._components if not any(_same(c, f) for f in found)]
        new = [f for f in found if not any(_same(f, c) for c in self._components)]
        self._components = found
        return gone, [box for box, _ in gone + new]

    def _paint_components(self, gone: list[tuple[BoxSlices, BoolMask]]) -> None:
        """:attr:`model` = the components found last, after clearing the boxes of those that disappeared."""
        for box, _ in gone:
            self.model[box] = False
        for box, mask in self._components:  # all of them: a box that disappeared may cross one that stayed
            self.model[box] |= mask


def _same(a: tuple[BoxSlices, BoolMask], b: tuple[BoxSlices, BoolMask]) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1])
