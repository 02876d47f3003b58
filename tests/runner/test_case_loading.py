"""Case loading in evaluate: values that would give wrong scores are refused as the case's error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.volume import VolumeError
from nfbench.models.spec import ModelSpec
from nfbench.runner.evaluate import EvaluationPlan, evaluate
from nfbench.runner.tasks import Task, _load_case
from tests.io.conftest import write_nifti

SHAPE = (30, 6, 30)


def _blobs(value_of, n: int) -> np.ndarray:
    """``n`` separate 2×2×2 lesions, the i-th holding ``value_of(i)``."""
    label = np.zeros(SHAPE, np.uint8)
    for i in range(n):
        label[3 * (i % 9) : 3 * (i % 9) + 2, 1:3, 3 * (i // 9) : 3 * (i // 9) + 2] = value_of(i)
    return label


def _case(root: Path, label: np.ndarray, image: np.ndarray | None = None) -> tuple[Path, Path]:
    image = np.random.default_rng(0).uniform(10, 100, SHAPE).astype(np.float32) if image is None else image
    return (write_nifti(root / "imagesTs_1" / "a_0000.nii.gz", image),
            write_nifti(root / "labelsTs_1" / "a.nii.gz", label))


def _task(image: Path, label: Path, *, recompute: bool = False) -> Task:
    return Task(run_id="r", test_set="imagesTs_1", case="a", image=image, label=label, spec=ModelSpec("sphere"),
                scenarios=(scenario_from_options("lesion-single"),), recompute_instances=recompute)


def test_mask_scaled_to_255_is_refused_unless_instances_are_recomputed(tmp_path):
    image, label = _case(tmp_path, _blobs(lambda i: 255, 11))
    with pytest.raises(VolumeError) as err:
        _load_case(_task(image, label))
    message = str(err.value)
    assert message.startswith(f"{label}: label values (255) look like a mask scaled to 0/255")
    assert "11 separate 26-connected regions" in message and "--recompute-instances" in message
    assert len(_load_case(_task(image, label, recompute=True)).lesions) == 11


def test_instance_map_and_binary_labels_load(tmp_path):
    instances = _blobs(lambda i: i + 1, 11)
    instances[25, 4, 25] = 3  # lesion 3 in two pieces
    image, label = _case(tmp_path / "ids", instances)
    assert len(_load_case(_task(image, label)).lesions) == 11
    image, label = _case(tmp_path / "binary", _blobs(lambda i: 1, 11))
    assert len(_load_case(_task(image, label)).lesions) == 11


def test_non_finite_image_is_refused(tmp_path):
    voxels = np.ones(SHAPE, np.float32)
    voxels[0, 0, :3] = np.nan
    voxels[1, 1, 1] = -np.inf
    image, label = _case(tmp_path, _blobs(lambda i: 1, 2), voxels)
    with pytest.raises(VolumeError, match=rf"^{image}: image holds non-finite values \(3 NaN, 1 infinite voxels\)$"):
        _load_case(_task(image, label))


def test_complex_image_is_refused(tmp_path):
    image, label = _case(tmp_path, _blobs(lambda i: 1, 2), np.ones(SHAPE, np.complex64))
    with pytest.raises(VolumeError, match=rf"^{image}: image holds complex values \(complex64\)"):
        _load_case(_task(image, label))


def test_refusals_are_the_cases_errors_in_a_run(tmp_path):
    voxels = np.ones(SHAPE, np.float32)
    voxels[2, 2, 2] = np.nan
    _case(tmp_path / "nan", _blobs(lambda i: 1, 2), voxels)
    _case(tmp_path / "scaled", _blobs(lambda i: 255, 11))
    for name, expected in (("nan", "image holds non-finite values"), ("scaled", "label values (255)")):
        plan = EvaluationPlan(data=tmp_path / name, test_sets=("imagesTs_1",), models=("sphere",),
                              scenarios=(scenario_from_options("lesion-single"),))
        summary = evaluate(plan, tmp_path / f"run_{name}", quiet=True)
        assert len(summary.failed) == 1 and expected in summary.failed[0][1], name
