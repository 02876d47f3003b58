"""A real brain MRI with targets derived from the image itself, for the baselines (issue 8).

The image is the MNI152 2009 T1 template that nilearn ships inside its wheel
(``nilearn/datasets/data``, no download), skull-stripped (0 outside the brain), with its grey- and
white-matter probability maps. Targets are the larger cerebrospinal-fluid spaces deep in the brain
(lateral ventricles, third ventricle, temporal horns): voxels of the brain that are neither grey
nor white matter, eroded away from the brain's surface, as connected components. In T1 they are
dark, darker than the tissue around them but brighter than the empty outside; the contrast-inverted
image makes them bright, with the outside brighter still. The template is a 1 mm average of 152
brains; here it is block-averaged to ``step`` mm and cropped to the brain.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.volume import Volume
from nfbench.lesions import Lesion, instance_map, lesion_table
from nfbench.models.registry import load_model
from tests.engine import run

__all__ = ["mni_case", "dice_after"]

_FILES = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
MIN_TARGET_ML = 0.5
"""Smallest CSF space kept as a target (sulcal CSF and small pockets are not prompted)."""


def _template(kind: str) -> np.ndarray:
    nilearn = pytest.importorskip("nilearn")
    path = Path(nilearn.__file__).parent / "datasets" / "data" / _FILES.format(kind)
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def _block_mean(data: np.ndarray, step: int) -> np.ndarray:
    shape = [n // step for n in data.shape]
    data = data[: shape[0] * step, : shape[1] * step, : shape[2] * step]
    return data.reshape(shape[0], step, shape[1], step, shape[2], step).mean(axis=(1, 3, 5))


def mni_case(step: int = 2, *, inverted: bool = False) -> tuple[Volume, np.ndarray, list[Lesion]]:
    """The T1 template at ``step`` mm (contrast-inverted if asked), its CSF-space instance map and
    lesion table. The targets are derived from the tissue maps, never from the baselines."""
    t1 = _block_mean(_template("t1"), step)
    tissue = _block_mean(_template("gm") + _template("wm"), step) / 255.0
    brain = t1 > 0
    deep = ndimage.binary_erosion(brain, iterations=max(1, 8 // step))
    csf = deep & (tissue < 0.2)
    instances = instance_map(csf)
    sizes = np.bincount(instances.ravel())
    small = sizes * step**3 / 1000.0 < MIN_TARGET_ML
    small[0] = True
    instances = instance_map(~small[instances] & (instances > 0))
    box = ndimage.find_objects(brain.astype(np.uint8))[0]
    image = (t1.max() - t1 if inverted else t1)[box]
    affine = np.diag([float(step)] * 3 + [1.0])
    volume = Volume(np.ascontiguousarray(image, np.float32), affine, affine, nib.Nifti1Header())
    instances = np.ascontiguousarray(instances[box])
    return volume, instances, lesion_table(instances, affine=affine)


def dice_after(
    model: str, volume: Volume, instances: np.ndarray, lesions: list[Lesion], interactions: int = 3
) -> tuple[float, float]:
    """Mean lesion Dice after ``interactions`` of the lesion-corrective scenario, run by the engine,
    and the model's median latency per interaction (ms)."""
    scenario = scenario_from_options("lesion-corrective", interactions=interactions)
    result = run(load_model(model), scenario, volume, instances, lesions, case="mni152")
    last = [r.dice_lesion for r in result.interactions if r.interaction == interactions]
    latency = [r.latency_ms for r in result.interactions if not r.carried_forward]
    return float(np.mean(last)), float(np.median(latency))
