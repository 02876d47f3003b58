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

# Columns that measure the machine rather than the method.
_TIMING = {"latency_ms", "overhead_ms", "wall_time_s", "peak_memory_mb", "mean_latency_ms"}
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
    ],
)
def test_evaluate_refuses_bad_options_in_one_line(tiny_dataset, tmp_path, extra, message):
    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "sphere", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


def test_unknown_model_is_named(tiny_dataset, tmp_path):
    args = ["evaluate", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "spheer"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "sphere" in result.output


def test_killed_run_resumes_to_the_same_tables(tiny_dataset, tmp_path):
    cli = [sys.executable, "-m", "nfbench.cli"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(cli + _args(tiny_dataset, full), check=True, capture_output=True)
    n_parts = len(list((full / "parts").iterdir()))

    process = subprocess.Popen(cli + _args(tiny_dataset, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        parts = killed / "parts"
        if parts.is_dir() and sum(1 for p in parts.iterdir() if not p.name.startswith(".tmp-")) >= 2:
            break
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = [p for p in (killed / "parts").iterdir() if not p.name.startswith(".tmp-")]
    assert 0 < len(kept) < n_parts, "the run should have been killed mid-way"
    assert not (killed / "cases.parquet").exists()

    resumed = subprocess.run(cli + _args(tiny_dataset, killed) + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(kept)} kept from before" in resumed.stdout
    for name in _TABLES:
        pd.testing.assert_frame_equal(_comparable(full, name), _comparable(killed, name), check_dtype=False)
