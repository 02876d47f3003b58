"""Metrics over bool masks and curves: overlap, surface distances, detection, interaction curves.

Pure functions over numpy arrays; definitions in DESIGN.md §2 "Metrics".
"""

from nfbench.metrics.curves import auc, noc, reached
from nfbench.metrics.detection import Detection, detection
from nfbench.metrics.overlap import dice, dice_from_counts
from nfbench.metrics.surface import SurfaceMetrics, surface_distances, surface_metrics, surfel_area_table

__all__ = [
    "auc", "noc", "reached",
    "Detection", "detection",
    "dice", "dice_from_counts",
    "SurfaceMetrics", "surface_distances", "surface_metrics", "surfel_area_table",
]
