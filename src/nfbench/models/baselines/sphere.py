"""`sphere`: a ball around each positive click, the floor every model must beat."""

from __future__ import annotations

from nfbench.io.volume import Volume
from nfbench.models.baselines.click_regions import ClickRegionSession, Region, ball_in, own_side
from nfbench.models.blocks.grids import box_around
from nfbench.types import Click

__all__ = ["SphereModel"]


class SphereModel:
    """A ball of fixed radius (mm) at each positive click.

    A negative click takes away the part of a ball that is closer (in mm) to it than to the
    ball's own click, so correcting an over-segmented border never removes the clicked lesion.
    """

    name = "sphere"
    capabilities = frozenset({"click"})
    needs_weights = False
    description = "Ball of fixed radius at each positive click (lower bound)"

    def __init__(self, radius_mm: float = 5.0) -> None:
        if radius_mm <= 0:
            raise ValueError(f"sphere radius must be positive, got {radius_mm} mm")
        self.radius_mm = radius_mm

    @classmethod
    def requirements(cls) -> list[str]:
        return []

    def start(self, image: Volume, *, seed: int = 0) -> _SphereSession:
        """One case's session; ``seed`` is unused (the model is deterministic)."""
        return _SphereSession(image, self.radius_mm)


class _SphereSession(ClickRegionSession):
    model_name = "sphere"

    def __init__(self, image: Volume, radius_mm: float) -> None:
        self.radius_mm = self.influence_mm = radius_mm
        super().__init__(image)

    def segment(self, click: Click) -> Region:
        box = box_around(click.ijk, self.radius_mm, self.spacing, self.shape)
        mask = ball_in(box, click.ijk, self.radius_mm, self.spacing)
        mask &= own_side(box, click, self.negatives_in(box), self.spacing)
        return Region(box, mask)
