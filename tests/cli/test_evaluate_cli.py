"""`nfbench evaluate` as a user runs it, including a run killed with SIGKILL and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.models.baselines.sphere import SphereModel
from nfbench.models.registry import register_model, unregister_model
from tests.engine import plugin_cli


# Columns that measure the machine rather than the method.
_TIMING = {"latency_ms", "overhead_ms", "wall_time_s", "model_start_s", "peak_memory_mb", "peak_gpu_memory_mb",
           "mean_latency_ms"}
_TABLES = ("clicks", "interactions", "lesions", "cases")


def _args(data: Path, out: Path) -> list[str]:
    return ["evaluate", "--data", str(data), "--out", str(out), "--model", "sphere", "--model", "region-grow",
            "--test-set", "imagesTr", "--test-set", "imagesTs_1", "--test-set", "imagesTs_2",
            "--scenario", "lesion-corrective", "--scenario", "global-corrective", "--budget", "20", "--quiet"]


def _comparable(run: Path, name: str) -> pd.DataFrame:
    table = pd.read_parquet(run / f"{name}.parquet")
    table = table.drop(columns=[c for c in table.columns if c in _TIMING]).drop(columns=["run_id"])
    return table.reset_index(drop=True)


def test_evaluate_writes_a_run(tiny_dataset, tmp_path):
    result = CliRunner().invoke(app, _args(tiny_dataset, tmp_path / "run")[:9] + ["--quiet", "--csv"])
    assert result.exit_code == 0, result.output
    assert "run folder" in result.output
    for name in _TABLES:
        assert (tmp_path / "run" / f"{name}.parquet").exists() and (tmp_path / "run" / f"{name}.csv").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scenario", "lesion-corective"], "Did you mean 'lesion-corrective'"),
        (["--clicks", "centre"], "Did you mean 'center'"),
        (["--stop-dice", "high"], "--stop-dice must be"),
        (["--case", "no_such_case"], "no case 'no_such_case' in imagesTs_1"),
        (["--tolerance-mm", "-5"], "NSD tolerance must be a positive number of mm, got -5.0"),
        (["--alpha", "-1"], "alpha must be finite and >= 0, got -1.0"),
        (["--jobs", "0"], "parallel jobs must be a whole number >= 1"),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--weights", "w.pt"], "model 'sphere' takes no weights"),
        (["-o", "radius_mm=big"], "option 'radius_mm' takes a float, got 'big'"),
        (["-o", "radius"], "a model option must look like KEY=VALUE"),
        (["--preset", "cvpr"], "Did you mean 'cvpr25'"),
    ],
)
def test_evaluate_refuses_bad_options_in_one_line(tiny_dataset, tmp_path, extra, message):
    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "sphere", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_options_no_scenario_takes_are_named(tiny_dataset, tmp_path):
    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "sphere",
            "--test-set", "imagesTs_1", "--scenario", "lesion-single", "--interactions", "5", "--budget", "7",
            "--alpha", "3", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for option in ("--interactions 5 is ignored", "--budget 7 is ignored", "--alpha 3.0 is ignored"):
        assert option in result.output


def test_a_negative_seed_is_refused_before_anything_is_written(tiny_dataset, tmp_path):
    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "sphere", "--seed", "-1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "--seed" in result.output and not (tmp_path / "r").exists()


def test_two_jobs_give_the_tables_of_one(tiny_dataset, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for out, jobs in ((one, "1"), (two, "2")):
        result = CliRunner().invoke(app, _args(tiny_dataset, out) + ["--jobs", jobs, "--scenario", "global-single"])
        assert result.exit_code == 0, result.output
    for name in _TABLES:
        first, second = _comparable(one, name), _comparable(two, name)
        assert len(first) > 0
        pd.testing.assert_frame_equal(first, second, check_dtype=False)


def test_cvpr25_preset_scores_like_the_challenge(tiny_dataset, tmp_path):
    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "sphere",
            "--preset", "cvpr25", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "model 'sphere' takes no boxes: in 'lesion-corrective' (cvpr25) its box step" in result.output
    rows = pd.read_parquet(tmp_path / "r" / "interactions.parquet")
    lesions = pd.read_parquet(tmp_path / "r" / "lesions.parquet")
    assert set(rows["budget"]) == {6} and set(rows["click_policy"]) == {"center-voxel"}
    # The click-only sphere gets nothing at the box step, then one center-voxel click per step.
    assert (rows.loc[rows["interaction"] == 1, "n_clicks"] == 0).all()
    assert rows["nsd_cvpr_lesion"].notna().all()
    gated = rows["dice_lesion"] <= 0.2
    assert (rows.loc[gated, "nsd_cvpr_lesion"] == 0).all()
    assert (rows.loc[~gated, "nsd_cvpr_lesion"] == rows.loc[~gated, "nsd_lesion"]).all()
    assert lesions["auc_dice_cvpr"].between(0, 4).all() and lesions["auc_nsd_cvpr"].between(0, 4).all()


def test_unknown_model_is_named(tiny_dataset, tmp_path):
    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "spheer"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "sphere" in result.output


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_to_the_same_tables(tiny_dataset, tmp_path, how):
    cli = [sys.executable, "-m", "nfbench.cli"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(cli + _args(tiny_dataset, full), check=True, capture_output=True)
    n_parts = len(list((full / "parts").iterdir()))

    process = subprocess.Popen(cli + _args(tiny_dataset, killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        parts = killed / "parts"
        if parts.is_dir() and sum(1 for p in parts.iterdir() if not p.name.startswith(".tmp-")) >= 2:
            break
        time.sleep(0.005)
    os.kill(process.pid, how)
    _, stderr = process.communicate()
    if how == signal.SIGINT:  # Ctrl-C: a clear line, no traceback
        assert process.returncode == 130 and "interrupted; the finished cases are kept" in stderr, stderr
    kept = [p for p in (killed / "parts").iterdir() if not p.name.startswith(".tmp-")]
    assert 0 < len(kept) < n_parts, "the run should have been killed mid-way"
    assert not (killed / "cases.parquet").exists()

    resumed = subprocess.run(cli + _args(tiny_dataset, killed) + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(kept)} kept from before" in resumed.stdout
    for name in _TABLES:
        pd.testing.assert_frame_equal(_comparable(full, name), _comparable(killed, name), check_dtype=False)


class SleepySphere(SphereModel):
    """The sphere, asleep for $NFBENCH_TEST_SLEEP_S seconds when it starts on a case: a case that is
    still running when the run is interrupted (its results are those of the sphere)."""

    def start(self, image, *, seed=0):
        time.sleep(float(os.environ.get("NFBENCH_TEST_SLEEP_S", "0")))
        return super().start(image, seed=seed)


@pytest.mark.slow  # three evaluations, two in fresh interpreters: about 10 s
def test_ctrl_c_with_jobs_stops_the_workers_at_once_and_resumes_to_the_same_tables(tiny_dataset, tmp_path):
    script = plugin_cli(tmp_path / "nfbench_cli.py", "tests.cli.test_evaluate_cli", "SleepySphere", "sleepy-sphere")
    run = tmp_path / "run"
    args = ["evaluate", "--data", str(tiny_dataset), "--model", "sleepy-sphere", "--model", "sphere",
            "--test-set", "imagesTs_1", "--test-set", "imagesTs_2", "--scenario", "lesion-single", "--quiet"]
    cli = [sys.executable, str(script), *args, "--out", str(run), "--jobs", "2"]
    # Tasks go case by case: the sphere finishes its first case while both workers then sleep in a
    # sleepy-sphere's start, long past the test's patience.
    process = subprocess.Popen(cli, env={**os.environ, "NFBENCH_TEST_SLEEP_S": "120"}, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        parts = run / "parts"
        while time.monotonic() < deadline and process.poll() is None:
            if parts.is_dir() and any(not p.name.startswith(".tmp-") for p in parts.iterdir()):
                break
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGINT)  # the driver alone, as `kill -INT PID` does
        # the old driver waited for the sleeping cases (120 s): it would still run when this ends
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 130 and "the same command with --resume goes on" in stderr, stderr
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # no worker was left behind
    kept = {p.name: p.stat().st_mtime_ns for p in parts.iterdir() if not p.name.startswith(".tmp-")}
    assert len(kept) == 1 and next(iter(kept)).startswith("sphere__lesion-single__imagesTs_1__")

    resumed = subprocess.run(cli + ["--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "3 evaluated, 1 kept from before" in resumed.stdout
    assert {name: (parts / name).stat().st_mtime_ns for name in kept} == kept  # the finished case stayed as it was
    register_model("sleepy-sphere", SleepySphere)
    try:
        whole = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "whole")])
    finally:
        unregister_model("sleepy-sphere")
    assert whole.exit_code == 0, whole.output
    for name in _TABLES:
        pd.testing.assert_frame_equal(_comparable(tmp_path / "whole", name), _comparable(run, name), check_dtype=False)


def test_single_click_scenarios_record_the_interactions_they_make(tiny_dataset, tmp_path):
    import json

    from nfbench.interaction.scenarios import scenario_from_options

    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "sphere",
            "--test-set", "imagesTs_1", "--lesions", "2", "--budget", "7", "--interactions", "2", "--quiet"]
    for name in ("global-single", "global-corrective", "lesion-single", "lesion-corrective"):
        args += ["--scenario", name]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["scenario_options"]
    single = scenario_from_options("global-single").interactions  # the preset's: --budget does not apply
    assert {name: options["interactions"] for name, options in recorded.items()} == {
        "global-single": single, "global-corrective": 7, "lesion-single": single, "lesion-corrective": 2}


def test_resume_names_changed_versions_and_another_nfbench_needs_a_flag(tiny_dataset, tmp_path):
    import json

    import nfbench

    run = tmp_path / "r"
    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(run), "--model", "sphere", "--test-set",
            "imagesTs_1", "--scenario", "lesion-single", "--lesions", "2", "--quiet"]
    assert CliRunner().invoke(app, args).exit_code == 0
    config = json.loads((run / "config.json").read_text())
    config["versions"].update(nfbench="0.0.1", numpy="1.0.0")
    (run / "config.json").write_text(json.dumps(config))
    refused = CliRunner().invoke(app, [*args, "--resume"])
    assert refused.exit_code == 1 and "--accept-nfbench-version" in refused.output and "Traceback" not in refused.output
    accepted = CliRunner().invoke(app, [*args, "--resume", "--accept-nfbench-version"])
    assert accepted.exit_code == 0, accepted.output
    assert "warning:" in accepted.output and f"nfbench 0.0.1 → {nfbench.__version__}, numpy 1.0.0 → " in accepted.output
    assert "0 evaluated, 1 kept from before" in accepted.output
