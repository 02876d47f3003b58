from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.dataset import discover_dataset
from nfbench.io.volume import load_volume
from nfbench.lesions import instance_map
from nfbench.results.schema import TABLES
from nfbench.results.store import RunError
from nfbench.runner.evaluate import EvaluationPlan, evaluate
from tests.oracle_models import BrokenModel, OracleModel


class CaseOracle(OracleModel):
    """The oracle for whichever case it is started on (reads the label next to the image)."""

    def __init__(self, dataset) -> None:
        self.labels = {c.image: c.label for c in dataset.cases}
        self.name = "oracle"

    def start(self, image):
        self.instances = instance_map(load_volume(self.labels[image.path]).data)
        return super().start(image)


def _plan(data, **kw):
    scenarios = (scenario_from_options("lesion-corrective", interactions=2), scenario_from_options("global-corrective", interactions=5))
    return EvaluationPlan(data=data, test_sets=("imagesTs_1", "imagesTs_2"), models=("oracle",), scenarios=scenarios, seed=3, **kw)


def test_run_folder_has_every_table_and_column(tiny_dataset, tmp_path):
    dataset = discover_dataset(tiny_dataset)
    summary = evaluate(_plan(tiny_dataset), tmp_path / "run", models={"oracle": CaseOracle(dataset)}, quiet=True,
                       csv=True, save_predictions=True)
    assert summary.failed == [] and summary.n_cases == 2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["seed"] == 3 and config["run_id"] == "run" and "numpy" in config["versions"]
    for name, columns in TABLES.items():
        table = pd.read_parquet(tmp_path / "run" / f"{name}.parquet")
        assert list(table.columns[: len(columns)]) == list(columns), name
        assert (tmp_path / "run" / f"{name}.csv").exists()
    cases = pd.read_parquet(tmp_path / "run" / "cases.parquet")
    assert len(cases) == 4 and (cases["status"] == "ok").all()
    # The oracle segments every prompted lesion exactly.
    lesion_rows = cases[cases["scenario"] == "lesion-corrective"]
    assert (lesion_rows["dice_scan"][lesion_rows["n_lesions"] <= 20] == 1.0).all()
    predictions = sorted((tmp_path / "run" / "predictions").rglob("*.nii.gz"))
    assert len(predictions) == 4
    # Predictions are written in the label file's original orientation and grid.
    case = dataset.subset("imagesTs_2")[0]
    written = load_volume(tmp_path / "run/predictions/oracle/lesion-corrective/imagesTs_2" / f"{case.name}.nii.gz")
    label = load_volume(case.label)
    np.testing.assert_array_equal(written.original_affine, label.original_affine)
    assert written.data.shape == label.data.shape
    previews = sorted((tmp_path / "run" / "previews").glob("*.npz"))
    assert len(previews) == 4


def test_failed_case_is_recorded_and_the_run_goes_on(tiny_dataset, tmp_path):
    dataset = discover_dataset(tiny_dataset)
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_1",), models=("broken", "oracle"),
                          scenarios=(scenario_from_options("lesion-single"),))
    summary = evaluate(plan, tmp_path / "run", models={"broken": BrokenModel(), "oracle": CaseOracle(dataset)}, quiet=True)
    assert len(summary.failed) == 1 and "broken" in summary.failed[0][1]
    cases = pd.read_parquet(tmp_path / "run" / "cases.parquet").set_index("model")
    assert cases.loc["broken", "status"] == "failed" and "dtype uint8" in cases.loc["broken", "error"]
    assert cases.loc["oracle", "status"] == "ok"


def test_existing_run_needs_resume_and_same_configuration(tiny_dataset, tmp_path):
    dataset = discover_dataset(tiny_dataset)
    models = {"oracle": CaseOracle(dataset)}
    evaluate(_plan(tiny_dataset), tmp_path / "run", models=models, quiet=True)
    with pytest.raises(RunError, match="already exists"):
        evaluate(_plan(tiny_dataset), tmp_path / "run", models=models, quiet=True)
    with pytest.raises(RunError, match="differs in seed"):
        evaluate(_plan(tiny_dataset).__class__(**{**_plan(tiny_dataset).__dict__, "seed": 4}), tmp_path / "run",
                 models=models, quiet=True, resume=True)
    summary = evaluate(_plan(tiny_dataset), tmp_path / "run", models=models, quiet=True, resume=True)
    assert summary.skipped == 4 and summary.failed == []


def test_lesion_free_case_evaluates(tiny_dataset, tmp_path):
    from nfbench.phantom import make_case
    from nfbench.io.volume import save_volume

    phantom = make_case(size="tiny", burden="low", rng=1, n_lesions=0)
    image, label = phantom.volumes()
    save_volume(image, tmp_path / "data/imagesTs_1/empty.nii.gz")
    save_volume(label, tmp_path / "data/labelsTs_1/empty.nii.gz")
    dataset = discover_dataset(tmp_path / "data")
    plan = EvaluationPlan(data=tmp_path / "data", test_sets=("imagesTs_1",), models=("oracle",),
                          scenarios=(scenario_from_options("lesion-corrective"), scenario_from_options("global-corrective")))
    summary = evaluate(plan, tmp_path / "run", models={"oracle": CaseOracle(dataset)}, quiet=True)
    assert summary.failed == []
    cases = pd.read_parquet(tmp_path / "run" / "cases.parquet")
    assert (cases["dice_scan"] == 1.0).all() and (cases["n_lesions"] == 0).all()
