from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.dataset import discover_dataset
from nfbench.io.volume import VolumeError, load_volume, save_volume
from nfbench.lesions import instance_map
from nfbench.results.schema import TABLES
from nfbench.results.store import RunError
from nfbench.runner.evaluate import EvaluationPlan, evaluate
from tests.oracle_models import BoxOnlyModel, BrokenModel, OracleModel


class CaseOracle(OracleModel):
    """The oracle for whichever case it is started on (reads the label next to the image)."""

    def __init__(self, dataset, name: str = "oracle") -> None:
        super().__init__(None, name)
        self.labels = {c.image: c.label for c in dataset.cases}

    def start(self, image, *, seed=0):
        self.instances = instance_map(load_volume(self.labels[image.path]).data)
        return super().start(image, seed=seed)


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


def test_a_broken_plug_in_is_named_as_it_was_registered_not_by_its_class_name(tiny_dataset, tmp_path):
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_1",), models=("my-plugin",),
                          scenarios=(scenario_from_options("lesion-single"),))
    summary = evaluate(plan, tmp_path / "run", models={"my-plugin": BrokenModel()}, quiet=True)
    assert BrokenModel.name != "my-plugin" and "model 'my-plugin' returned" in summary.failed[0][1]


class CrashingModel(BrokenModel):
    """A plug-in whose predict fails deep in its own code."""

    name = "crashing"

    def predict(self):
        return self._threshold()

    def _threshold(self):
        raise RuntimeError("my model crashed")


def test_a_plugin_error_keeps_where_it_happened(tiny_dataset, tmp_path):
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_1",), models=("crashing",),
                          scenarios=(scenario_from_options("lesion-single"),))
    evaluate(plan, tmp_path / "run", models={"crashing": CrashingModel()}, quiet=True)
    error = pd.read_parquet(tmp_path / "run" / "cases.parquet")["error"].iloc[0]
    assert error.startswith("RuntimeError: my model crashed") and "in _threshold" in error


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


def test_resume_refuses_results_of_data_that_changed_and_takes_options_in_any_order(tiny_dataset, tmp_path):
    data = shutil.copytree(tiny_dataset, tmp_path / "data")  # its label is replaced below
    dataset = discover_dataset(data)
    models = {"oracle": CaseOracle(dataset)}
    plan = _plan(data)
    evaluate(plan, tmp_path / "run", models=models, quiet=True)
    reordered = plan.__class__(**{**plan.__dict__, "test_sets": plan.test_sets[::-1], "scenarios": plan.scenarios[::-1]})
    assert evaluate(reordered, tmp_path / "run", models=models, quiet=True, resume=True).skipped == 4

    case = dataset.subset("imagesTs_2")[0]
    volume = load_volume(case.label)
    save_volume(volume, case.label, data=np.zeros_like(volume.data))  # the label replaced
    with pytest.raises(RunError, match=f"data of 2 finished case result.*{case.name}.*label .*{case.label.name}"):
        evaluate(plan, tmp_path / "run", models=models, quiet=True, resume=True)
    for part in (tmp_path / "run" / "parts").glob(f"*{case.name}*"):
        shutil.rmtree(part)  # as the message says: those cases are evaluated again
    summary = evaluate(plan, tmp_path / "run", models=models, quiet=True, resume=True)
    assert summary.skipped == 2 and summary.evaluated == 2


def test_cases_off_their_grid_or_without_label_are_refused_with_what_to_do(tiny_dataset, tmp_path):
    import nibabel as nib

    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    case = discover_dataset(data).subset("imagesTs_1")[0]
    label = nib.load(case.label)
    affine = label.affine.copy()
    affine[0, 3] += 0.02  # a label 0.02 mm off its image
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj), affine, label.header), case.label)
    plan = EvaluationPlan(data=data, test_sets=("imagesTs_1",), models=("sphere",),
                          scenarios=(scenario_from_options("lesion-single"),))
    with pytest.raises(VolumeError, match=r"0\.02 mm apart > tolerance.*give the label its image's affine"):
        evaluate(plan, tmp_path / "run", quiet=True)
    case.label.unlink()
    with pytest.raises(VolumeError, match="image without label.*--case evaluates only the cases named"):
        evaluate(plan, tmp_path / "run", quiet=True)


def test_lesion_free_case_evaluates(tiny_dataset, tmp_path):
    from nfbench.phantom import make_case

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


def test_oracle_scan_dice_is_that_of_the_prompted_lesions(tiny_dataset, tmp_path):
    dataset = discover_dataset(tiny_dataset)
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("imagesTr", "imagesTs_1", "imagesTs_2"), models=("oracle",),
                          scenarios=(scenario_from_options("lesion-corrective", lesions=3),))
    evaluate(plan, tmp_path / "run", models={"oracle": CaseOracle(dataset)}, quiet=True)
    cases = pd.read_parquet(tmp_path / "run" / "cases.parquet")
    assert len(cases) == 4
    for row in cases.itertuples():
        case = next(c for c in dataset.subset(row.test_set) if c.name == row.case)
        sizes = sorted(np.bincount(instance_map(load_volume(case.label).data).ravel())[1:], reverse=True)
        prompted, total = sum(sizes[:3]), sum(sizes)  # the oracle finds exactly the 3 largest lesions
        assert row.n_lesions == len(sizes) > 3
        assert row.dice_scan == pytest.approx(2 * prompted / (prompted + total))


def test_model_starts_once_per_case_with_the_runs_seed(tiny_dataset, tmp_path):
    dataset = discover_dataset(tiny_dataset)
    first, second = CaseOracle(dataset), CaseOracle(dataset)
    evaluate(_plan(tiny_dataset), tmp_path / "a", models={"oracle": first}, quiet=True)
    evaluate(_plan(tiny_dataset), tmp_path / "b", models={"oracle": second}, quiet=True)
    # Two cases x two scenarios: one session per case, reset between scenarios, closed at the end.
    assert first.starts == first.closed == 2
    assert first.seeds == second.seeds and len(set(first.seeds)) == 2
    cases = pd.read_parquet(tmp_path / "a" / "cases.parquet")
    assert (cases["model_start_s"] >= 0).all() and cases.groupby("case")["model_start_s"].nunique().eq(1).all()


def test_box_only_model_without_boxes_is_refused_before_any_work(tiny_dataset, tmp_path):
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_1",), models=("box-only",),
                          scenarios=(scenario_from_options("lesion-corrective"),))
    with pytest.raises(ValueError, match="model 'box-only' takes boxes only and scenario 'lesion-corrective' gives"):
        evaluate(plan, tmp_path / "run", models={"box-only": BoxOnlyModel(None)}, quiet=True)
    assert not (tmp_path / "run").exists()


def test_unknown_case_or_test_set_is_an_error(tiny_dataset, tmp_path):
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_1",), models=("sphere",),
                          scenarios=(scenario_from_options("lesion-single"),), cases=("nope",))
    with pytest.raises(ValueError, match="no case 'nope' in imagesTs_1"):
        evaluate(plan, tmp_path / "run", quiet=True)
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_9",), models=("sphere",),
                          scenarios=(scenario_from_options("lesion-single"),))
    with pytest.raises(ValueError, match="no test set 'imagesTs_9'"):
        evaluate(plan, tmp_path / "run", quiet=True)
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("Ts_1",), models=("sphere",),
                          scenarios=(scenario_from_options("lesion-single"),))
    with pytest.raises(ValueError, match="no test set 'Ts_1'.*in full: imagesTs_1"):
        evaluate(plan, tmp_path / "run", quiet=True)


@pytest.mark.parametrize("tolerance", [-5.0, 0.0, float("nan")])
def test_bad_tolerance_is_refused(tiny_dataset, tolerance):
    with pytest.raises(ValueError, match="NSD tolerance must be a positive number of mm"):
        EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_1",), models=("sphere",),
                       scenarios=(scenario_from_options("lesion-single"),), tolerance_mm=tolerance)


def _copy_dataset(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def test_labels_are_checked_with_the_messages_of_data_check(tiny_dataset, tmp_path):
    import nibabel as nib

    data = _copy_dataset(tiny_dataset, tmp_path / "data")
    case = discover_dataset(data).subset("imagesTs_1")[0]
    stored = nib.load(case.label)
    values = np.asanyarray(stored.dataobj).astype(np.float32)
    values[values > 0] += 0.5  # non-integer lesion IDs would be truncated
    nib.save(nib.Nifti1Image(values, stored.affine), case.label)
    plan = EvaluationPlan(data=data, test_sets=("imagesTs_1",), models=("sphere",),
                          scenarios=(scenario_from_options("lesion-single"),))
    summary = evaluate(plan, tmp_path / "run", quiet=True)
    assert len(summary.failed) == 1
    assert "label holds non-integer values" in summary.failed[0][1] and str(case.label) in summary.failed[0][1]


def test_label_off_the_image_grid_is_refused_before_any_work(tiny_dataset, tmp_path):
    import nibabel as nib

    data = _copy_dataset(tiny_dataset, tmp_path / "data")
    case = discover_dataset(data).subset("imagesTs_2")[0]
    stored = nib.load(case.label)
    affine = stored.affine.copy()
    affine[0, 3] += 1.0
    nib.save(nib.Nifti1Image(np.asanyarray(stored.dataobj), affine), case.label)
    plan = EvaluationPlan(data=data, test_sets=("imagesTs_1", "imagesTs_2"), models=("sphere",),
                          scenarios=(scenario_from_options("lesion-single"),))
    with pytest.raises(VolumeError, match=r"1 problem\(s\).*labelsTs_2.*affine .* differs from .*tolerance"):
        evaluate(plan, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


class EditingModel(BrokenModel):
    """A plug-in that normalises the image it is given in place."""

    name = "editing"

    def start(self, image, *, seed=0):
        image.data[...] = 0
        return super().start(image, seed=seed)


def test_a_model_cannot_edit_the_image_every_model_shares(tiny_dataset, tmp_path):
    plan = EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_1",), models=("editing",),
                          scenarios=(scenario_from_options("lesion-single"),))
    evaluate(plan, tmp_path / "run", models={"editing": EditingModel()}, quiet=True)
    error = pd.read_parquet(tmp_path / "run" / "cases.parquet")["error"].iloc[0]
    assert "read-only" in error and "in start" in error


def _record_versions(run, **recorded):
    """Make the run folder look started under other versions (as an older installation writes it)."""
    config = json.loads((run / "config.json").read_text())
    config["versions"].update(recorded)
    (run / "config.json").write_text(json.dumps(config))


def test_resume_under_other_library_versions_names_each_old_and_new(tiny_dataset, tmp_path):
    from nfbench.runner.evaluate import versions

    dataset = discover_dataset(tiny_dataset)
    models, notes = {"oracle": CaseOracle(dataset)}, []
    evaluate(_plan(tiny_dataset), tmp_path / "run", models=models, quiet=True, on_warning=notes.append)
    assert not any("versions" in n for n in notes)  # a new run has nothing to compare
    _record_versions(tmp_path / "run", numpy="1.0.0", scipy="0.1")
    summary = evaluate(_plan(tiny_dataset), tmp_path / "run", models=models, quiet=True, resume=True,
                       on_warning=notes.append)
    current = versions()
    assert summary.skipped == 4
    assert notes == [f"{tmp_path / 'run'}: resumed under other versions than the run was started with: numpy 1.0.0 → "
                     f"{current['numpy']}, scipy 0.1 → {current['scipy']}; its tables will mix results of both "
                     "(the report's provenance table tells them apart)"]


def test_resume_under_another_nfbench_is_refused_unless_accepted(tiny_dataset, tmp_path):
    import nfbench

    dataset = discover_dataset(tiny_dataset)
    models, notes = {"oracle": CaseOracle(dataset)}, []
    evaluate(_plan(tiny_dataset), tmp_path / "run", models=models, quiet=True)
    _record_versions(tmp_path / "run", nfbench="0.0.1")
    with pytest.raises(RunError, match=f"started with nfbench 0.0.1 and this is nfbench {nfbench.__version__}, whose "
                                       "numbers may differ.*--accept-nfbench-version"):
        evaluate(_plan(tiny_dataset), tmp_path / "run", models=models, quiet=True, resume=True)
    summary = evaluate(_plan(tiny_dataset), tmp_path / "run", models=models, quiet=True, resume=True,
                       accept_nfbench_version=True, on_warning=notes.append)
    assert summary.skipped == 4 and len(notes) == 1 and f"nfbench 0.0.1 → {nfbench.__version__}" in notes[0]
