"""Intensity normalisation shared by the learned models."""

from __future__ import annotations

import numpy as np

__all__ = ["zscore_nonzero"]


def zscore_nonzero(array: np.ndarray) -> np.ndarray:
    """MONAI ``NormalizeIntensity(nonzero=True)``: z-score of the non-zero voxels, zeros kept (float32).

    The mean and the population standard deviation are taken in float64, so a whole-body scan of
    70 M voxels is normalised as exactly as a small crop; a constant image keeps std 1.
    """
    out = np.zeros(array.shape, np.float32)
    inside = array != 0
    if inside.any():
        values = array[inside].astype(np.float64)
        std = values.std()
        out[inside] = (values - values.mean()) / (std if std > 0 else 1.0)
    return out
