"""`nfbench grid`: study expansion, executors (local, Dask), resuming after SIGKILL, failures, provenance."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.cli.grid import study_path
from nfbench.models.baselines.sphere import SphereModel
from nfbench.models.registry import register_model, unregister_model
from nfbench.results.aggregate import load_runs, main_table, provenance_warnings
from nfbench.results.report import comparison_table, write_report
from nfbench.results.schema import TABLES
from nfbench.results.store import RunError
from nfbench.runner.grid import StudyError, load_study, parse_only, plan_grid, run_grid
from tests.engine import plugin_cli

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"latency_ms", "overhead_ms", "wall_time_s", "model_start_s", "peak_memory_mb", "peak_gpu_memory_mb",
          "mean_latency_ms"}
"""Measurements, not results: they differ between any two runs."""


def write_study(folder: Path, data: Path, *, models: list | None = None, **extra: object) -> Path:
    """2 models × 2 scenarios × 2 folds on the tiny phantom; the sphere's radius follows the fold (10, 20 mm)."""
    import yaml

    study = {
        "name": "tiny", "data": str(data), "out": str(folder / "run"),
        "models": models or [{"name": "sphere", "options": {"radius_mm": "{fold}0"}}, "region-grow"],
        "folds": [1, 2], "seeds": [0], "test_sets": ["imagesTs_1", "imagesTs_2"],
        "scenarios": [{"name": "lesion-corrective", "lesions": 3, "interactions": 2},
                      {"name": "global-corrective", "interactions": 3}],
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def tables_of(run: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in TABLES:
        frame = pd.read_parquet(run / f"{name}.parquet")
        out[name] = frame[[c for c in frame.columns if c not in TIMING]]
    return out


def assert_same_tables(a: Path, b: Path) -> None:
    left, right = tables_of(a), tables_of(b)
    for name in TABLES:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)
    main = [main_table(load_runs([run])) for run in (a, b)]
    columns = [c for c in main[0].columns if "latency" not in c and "wall" not in c and "memory" not in c]
    pd.testing.assert_frame_equal(main[0][columns], main[1][columns])


def test_local_and_dask_executors_give_the_same_tables(tiny_dataset, tmp_path):
    pytest.importorskip("distributed")
    study = load_study(write_study(tmp_path, tiny_dataset))
    local = run_grid(study, tmp_path / "local" / "run", quiet=True)
    dask = run_grid(study, tmp_path / "dask" / "run", executor="dask", quiet=True)
    assert local.failed == [] and dask.failed == []
    assert local.tasks == dask.tasks == 2 * 2 * 2 and local.results == 16 and dask.evaluated == 16
    assert_same_tables(tmp_path / "local" / "run", tmp_path / "dask" / "run")
    cases = pd.read_parquet(tmp_path / "local" / "run" / "cases.parquet")
    assert len(cases) == 16 and set(cases["fold"]) == {1, 2}
    # the weights template's fold reached the model: the sphere's two folds differ, region-grow's do not
    sphere = cases[cases["model"] == "sphere"].pivot_table(index=["scenario", "case"], columns="fold", values="dice_scan")
    assert (sphere[1] != sphere[2]).any()
    # one report over the whole grid, with an overlay per model and scenario found under the grid's keys
    assert len(load_runs([tmp_path / "local" / "run"]).previews) == 16


def test_kill_and_resume_finishes_without_recomputing(tiny_dataset, tmp_path):
    study_file = write_study(tmp_path, tiny_dataset, models=[
        {"name": "slow-sphere", "options": {"radius_mm": "{fold}0"}}, "sphere"])
    script = plugin_cli(tmp_path / "grid.py", "tests.runner.test_grid", "SlowSphere", "slow-sphere")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(script), "grid", str(study_file), "--quiet"], env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    parts = run / "parts"
    while time.monotonic() < deadline and process.poll() is None:
        if parts.is_dir() and len([p for p in parts.iterdir() if not p.name.startswith(".tmp-")]) >= 3:
            break
        time.sleep(0.02)
    if process.poll() is not None:
        pytest.fail(f"the grid ended before it was killed: {process.communicate()[1].decode()[-2000:]}")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    before = {p.name: p.stat().st_mtime_ns for p in parts.iterdir() if not p.name.startswith(".tmp-")}
    assert 3 <= len(before) < 16 and not (run / "cases.parquet").exists()

    register_model("slow-sphere", SlowSphere)
    try:
        study = load_study(study_file)
        resumed = run_grid(study, quiet=True)
        assert run_grid(study, tmp_path / "whole" / "run", quiet=True).failed == []
        again = run_grid(study, quiet=True)  # everything is there: nothing to do
    finally:
        unregister_model("slow-sphere")
    assert resumed.skipped == len(before) and resumed.evaluated == 16 - len(before) and resumed.failed == []
    after = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    assert all(after[name] == stamp for name, stamp in before.items())  # finished cases were not written again
    assert_same_tables(run, tmp_path / "whole" / "run")
    assert again.skipped == 16 and again.evaluated == 0


class SlowSphere(SphereModel):
    """The sphere, slow to start: the kill-and-resume test needs a grid that takes a few seconds."""

    package = "nfbench"  # this module is `tests.runner.test_grid` in the subprocess, `test_grid` under pytest

    def start(self, image, *, seed=0):
        time.sleep(0.2)
        return super().start(image, seed=seed)


class FailsOnOneCase(SphereModel):
    """The sphere, except that it cannot start on the case ``bad``."""

    bad = ""

    def start(self, image, *, seed=0):
        if Path(image.path).name.startswith(self.bad):
            raise RuntimeError("cannot start on this case")
        return super().start(image, seed=seed)


def test_failing_tasks_are_reported_and_the_others_go_on(tiny_dataset, tmp_path):
    FailsOnOneCase.bad = sorted(p.name for p in (tiny_dataset / "imagesTr").iterdir())[0].split(".")[0]
    register_model("fails-on-one", FailsOnOneCase)
    try:
        study = load_study(write_study(tmp_path, tiny_dataset, models=["fails-on-one", "sphere"], folds=None,
                                       test_sets=["imagesTr", "imagesTs_1"]))
        summary = run_grid(study, jobs=2, quiet=True)
        result = CliRunner().invoke(app, ["grid", str(study.path), "--quiet"])
    finally:
        unregister_model("fails-on-one")
    assert len(summary.failed) == 2 and all("cannot start on this case" in e for _, e in summary.failed)
    assert {k.split("__")[0] for k, _ in summary.failed} == {"fails-on-one"} and summary.evaluated == 12
    cases = pd.read_parquet(study.out / "cases.parquet")
    assert (cases["status"] == "failed").sum() == 2 and (cases[cases["model"] == "sphere"]["status"] == "ok").all()
    # the rerun keeps the finished results and tries the failed ones again; the CLI lists them and exits 1
    assert result.exit_code == 1 and "2 failed" in result.output and "cannot start on this case" in result.output
    # the report does not pair the two models on the test set where their cases differ, unless asked
    tables = load_runs([study.out])
    refused = comparison_table(tables).set_index("test_set")
    assert refused.loc["imagesTr", "pairing"].str.startswith("not compared: the case sets differ").all()
    assert refused.loc["imagesTr", "p_value"].isna().all() and (refused.loc["imagesTs_1", "pairing"] == "same cases").all()
    shared = comparison_table(tables, shared_cases=True).set_index("test_set")
    assert shared.loc["imagesTr", "pairing"].str.startswith("shared cases only (fails-on-one: 1, sphere: 2").all()


def test_provenance_of_every_case_result_and_mixed_versions_in_the_report(tiny_dataset, tmp_path, capsys):
    study = load_study(write_study(tmp_path, tiny_dataset))
    run_grid(study, only=parse_only(["model=sphere"]), quiet=True)
    prov = pd.read_parquet(study.out / "provenance.parquet")
    cases = pd.read_parquet(study.out / "cases.parquet")
    assert len(prov) == len(cases) == 8
    assert (prov["study_sha256"] == hashlib.sha256(study.path.read_bytes()).hexdigest()).all()
    first = prov.iloc[0]
    assert first["numpy_version"] != "" and first["model_package"] == "nfbench" and first["device"] == "cpu"
    assert first["host"] and '"radius_mm": "%d0"' % first["fold"] in first["task_config"]
    assert provenance_warnings(load_runs([study.out])) == []
    failed = prov.copy()  # a case that failed before its model loaded records no model package: not a version
    failed.loc[0, ["model_package", "model_package_version"]] = ""
    failed.to_parquet(study.out / "provenance.parquet", index=False)
    assert provenance_warnings(load_runs([study.out])) == []
    # two versions of torch and two weights files for one model and fold: the report says so
    prov.loc[0, "torch_version"] = "0.0.1"
    prov.loc[prov.index[prov["fold"] == prov.loc[0, "fold"]][:2], "weights_sha256"] = ["a" * 64, "b" * 64]
    prov.to_parquet(study.out / "provenance.parquet", index=False)
    warnings = provenance_warnings(load_runs([study.out]))
    assert any("torch versions" in w and "0.0.1 (1 case results)" in w for w in warnings)
    assert any(w.startswith(f"sphere fold {prov.loc[0, 'fold']}: the results come from different weights") for w in warnings)
    html = write_report([study.out], tmp_path / "report", quiet=True, dpi=30).read_text()
    assert "Mixed provenance" in html and "0.0.1" in html
    assert "different weights" in capsys.readouterr().err


def _fake_nf_dataset(tiny_dataset: Path, root: Path, counts: dict[int, int]) -> Path:
    """The original's layout: imagesTs_1..4 and labelsTs_k_instance, copies of one tiny case."""
    image = next((tiny_dataset / "imagesTs_1").glob("*.nii.gz"))
    label = tiny_dataset / "labelsTs_1" / image.name
    for k, n in counts.items():
        for i in range(n):
            for source, folder in ((image, f"imagesTs_{k}"), (label, f"labelsTs_{k}_instance")):
                (root / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(source, root / folder / f"{i + 1}_2020_P_{k}{i}_T2.nii.gz")
    return root


def test_dry_run_of_the_paper_study_lists_every_task(tiny_dataset, tmp_path):
    data = _fake_nf_dataset(tiny_dataset, tmp_path / "NF", {1: 2, 2: 1, 3: 3, 4: 1})
    args = ["grid", str(ROOT / "configs" / "paper.yaml"), "--dry-run", "--set", f"data={data}",
            "--set", f"weights_root={tmp_path / 'weights'}"]
    result = CliRunner().invoke(app, args)
    # the tasks are listed, then the run it would be is refused: no weights file is there
    assert result.exit_code == 1 and "problem(s) with the study's models" in result.output
    lines = result.stdout.splitlines()
    # 3 models × 3 folds × 7 cases, each in lesion-corrective and global-corrective (paper preset)
    assert lines[-1].startswith("63 tasks, 126 case results (0 already in runs/paper)")
    assert len([line for line in lines if line.startswith(("sw-fastedit ", "dins-onnx ", "sam2 "))]) == 63
    assert "lesion-corrective (patch clicks, 20 lesions, budget 3, stop 1, preset paper)" in result.output
    assert "global-corrective (patch clicks, 20 lesions, budget 60, stop 0.8, preset paper)" in result.output
    assert f"{tmp_path / 'weights'}/SW-FastEdit/fold_2/checkpoint.pt (missing)" in result.output
    assert f"{tmp_path / 'weights'}/SAM2/fold_3 (missing)" in result.output
    only = CliRunner().invoke(app, [*args, "--only", "model=sam2,fold=1", "--only", "fold=3"])
    assert only.stdout.splitlines()[-1].startswith("14 tasks, 28 case results")
    nothing = CliRunner().invoke(app, [*args, "--only", "model=nosuch"])
    assert nothing.exit_code == 1 and "no task matches --only model=nosuch" in nothing.output
    # the shipped studies are package data; configs/ at the repository root is the same folder
    assert study_path("paper").read_bytes() == (ROOT / "configs" / "paper.yaml").read_bytes()
    assert load_study(study_path("demo")).phantom is not None


def test_running_needs_every_weights_file_first(tiny_dataset, tmp_path):
    data = _fake_nf_dataset(tiny_dataset, tmp_path / "NF", {1: 1, 2: 1, 3: 1, 4: 1})
    study = load_study(ROOT / "configs" / "paper.yaml", overrides={"data": str(data), "weights_root": str(tmp_path)})
    with pytest.raises(StudyError, match=r"problem\(s\) with the study's models: .*sw-fastedit.*fold_1/checkpoint.pt"):
        run_grid(study, tmp_path / "run", only=parse_only(["model=sw-fastedit"]), quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"modles": []}, "unknown key 'modles'. Did you mean 'models'?"),
    ({"models": [{"name": "sphere", "weights": "{root}/x"}]}, r"models\[sphere\].weights: unknown template field \{root\}"),
    ({"scenarios": ["lesion-corective"]}, "scenarios\\[0\\]: unknown scenario 'lesion-corective'. Did you mean 'lesion-corrective'"),
    ({"seeds": [0, 0]}, "seeds: \\[0, 0\\] lists a value twice"),
    ({"folds": ["one"]}, "folds: expected int values, got 'one'"),
])
def test_study_errors_name_the_entry(tiny_dataset, tmp_path, change, message):
    with pytest.raises(StudyError, match=message):
        load_study(write_study(tmp_path, tiny_dataset, **change))


def test_only_filters_and_its_errors(tiny_dataset, tmp_path):
    study = load_study(write_study(tmp_path, tiny_dataset))
    tasks = plan_grid(study, only=parse_only(["model=sphere,fold=2", "test_set=imagesTs_1"]))
    assert [(t.spec.name, t.fold, t.test_set) for t in tasks] == [("sphere", 2, "imagesTs_1")]
    assert [s.name for s in plan_grid(study, only=parse_only(["scenario=global-corrective"]))[0].scenarios] == [
        "global-corrective"]
    with pytest.raises(StudyError, match="unknown key 'modl'. Did you mean 'model'"):
        parse_only(["modl=sphere"])
    with pytest.raises(StudyError, match="write KEY=VALUE"):
        parse_only(["sphere"])


def test_grid_warns_before_a_click_only_model_meets_a_box_step(tiny_dataset, tmp_path):
    path = write_study(tmp_path, tiny_dataset, models=["sphere"], folds=None, test_sets=["imagesTs_1"],
                       scenarios=[{"name": "lesion-single", "lesions": 1}], presets=["cvpr25"])
    result = CliRunner().invoke(app, ["grid", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "model 'sphere' takes no boxes: in 'lesion-single' (cvpr25) its box step" in result.output


def test_a_single_click_scenario_with_interactions_is_refused(tiny_dataset, tmp_path):
    with pytest.raises(StudyError, match=r"scenarios\[1\]: global-single makes one click per prompted lesion and "
                                         "takes no interactions"):
        load_study(write_study(tmp_path, tiny_dataset, scenarios=["lesion-single",
                                                                  {"name": "global-single", "interactions": 60}]))


def test_a_rerun_under_other_versions_names_them_and_another_nfbench_needs_a_flag(tiny_dataset, tmp_path):
    import json

    import nfbench

    study = load_study(write_study(tmp_path, tiny_dataset, models=["sphere"], folds=None, test_sets=["imagesTs_1"],
                                   scenarios=[{"name": "lesion-single", "lesions": 2}]))
    run_grid(study, quiet=True)
    config = json.loads((study.out / "config.json").read_text())
    config["versions"].update(nfbench="0.0.1", pandas="0.1")
    (study.out / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="started with nfbench 0.0.1.*--accept-nfbench-version"):
        run_grid(study, quiet=True)
    notes = []
    summary = run_grid(study, quiet=True, accept_nfbench_version=True, on_warning=notes.append)
    assert summary.skipped == 1 and len(notes) == 1
    assert f"nfbench 0.0.1 → {nfbench.__version__}, pandas 0.1 → {pd.__version__}" in notes[0]


def test_ctrl_c_ends_the_grid_with_how_to_go_on(tiny_dataset, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("nfbench.runner.grid.run_grid", interrupted)
    result = CliRunner().invoke(app, ["grid", str(write_study(tmp_path, tiny_dataset)), "--quiet"])
    assert result.exit_code == 130
    assert "interrupted; the finished case results are kept in the study's run folder: the same command goes on" in result.output
