"""`sphere`: a ball around each positive click, the floor every model must beat."""

from __future__ import annotations

from nfbench.io.volume import Volume
from nfbench.models._local import LocalSession, Region, ball, crop_around
from nfbench.types import Click

__all__ = ["SphereModel"]


class SphereModel:
    """A ball of fixed radius (mm) at each positive click; negative clicks carve a ball out of it."""

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

    def start(self, image: Volume) -> _SphereSession:
        return _SphereSession(image, self.radius_mm)


class _SphereSession(LocalSession):
    model_name = "sphere"

    def __init__(self, image: Volume, radius_mm: float) -> None:
        self.radius_mm = radius_mm
        super().__init__(image)

    def segment(self, click: Click) -> Region:
        box = crop_around(click.ijk, self.radius_mm, self.spacing, self.shape)
        mask = ball(box, click.ijk, self.radius_mm, self.spacing)
        for negative in self.negatives:
            mask &= ~ball(box, negative.ijk, self.radius_mm, self.spacing)
        return Region(box, mask)
