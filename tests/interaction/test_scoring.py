"""Case scoring (interaction.scoring.score_case) on hand-built volumes whose errors are counted by hand."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.interaction.scoring import score_case
from nfbench.io.volume import Volume
from nfbench.lesions import lesion_table
from tests.engine import run_keys


def _score(instances: np.ndarray, prediction: np.ndarray, spacing: tuple[float, float, float]):
    affine = np.diag([*spacing, 1.0])
    volume = Volume(np.zeros(instances.shape, np.float32), affine, affine, nib.Nifti1Header())
    scenario = scenario_from_options("lesion-corrective")
    return score_case(run_keys("m", scenario), volume, instances, lesion_table(instances, affine=affine), scenario,
                      prediction, [], tolerance_mm=1.0, wall_time_s=0.0, model_start_s=0.0, peak_memory_mb=0.0,
                      peak_gpu_memory_mb=math.nan)


def _leaking_scene() -> tuple[np.ndarray, np.ndarray]:
    """Lesion 1 (8 voxels) predicted with an 8-voxel leak into the background attached to it; lesion 2
    (8 voxels) half predicted: every predicted component touches a lesion."""
    instances = np.zeros((10, 8, 6), np.uint8)
    instances[2:4, 2:4, 2:4] = 1
    instances[7:9, 5:7, 1:3] = 2
    prediction = instances == 1
    prediction[4:6, 2:4, 2:4] = True   # the leak, 26-connected to lesion 1's prediction
    prediction[7, 5:7, 1:3] = True     # 4 of lesion 2's 8 voxels
    return instances, prediction


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 2.0, 3.0)], ids=["isotropic", "anisotropic"])
def test_a_leaking_matched_component_shows_in_the_voxel_wise_fp_volume(spacing):
    instances, prediction = _leaking_scene()
    row = _score(instances, prediction, spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    assert row.fp_any == 0 and row.fn_any == 0
    assert row.fp_volume_ml == 0.0 and row.fn_volume_ml == 0.0  # component-wise: nothing unmatched
    assert row.fp_voxel_volume_ml == pytest.approx(8 * voxel_ml)
    assert row.fn_voxel_volume_ml == pytest.approx(4 * voxel_ml)
    assert row.dice_scan == pytest.approx(2 * 12 / (20 + 16))  # from the same counts


def test_voxel_wise_volumes_count_unmatched_components_and_missed_lesions_too():
    instances, prediction = _leaking_scene()
    prediction[7, 5:7, 1:3] = False    # lesion 2 missed entirely
    prediction[0, 7, 5] = True         # a lone false-positive voxel, matching no lesion
    row = _score(instances, prediction, (0.5, 2.0, 3.0))
    assert row.fp_volume_ml == pytest.approx(0.003) and row.fn_volume_ml == pytest.approx(8 * 0.003)
    assert row.fp_voxel_volume_ml == pytest.approx(9 * 0.003)
    assert row.fn_voxel_volume_ml == pytest.approx(8 * 0.003)


def test_empty_prediction_on_a_lesion_free_scan_has_no_voxel_errors():
    empty = np.zeros((4, 4, 4), np.uint8)
    row = _score(empty, empty > 0, (1.0, 1.0, 2.0))
    assert row.dice_scan == 1.0
    assert row.fp_voxel_volume_ml == 0.0 and row.fn_voxel_volume_ml == 0.0
