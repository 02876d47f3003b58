"""`nfbench demo` end to end, as the README runs it (one cheap model to stay fast)."""

from __future__ import annotations

from typer.testing import CliRunner

from nfbench.cli import app


def test_demo_runs_end_to_end_and_reuses_its_phantom(tmp_path):
    args = ["demo", "--out", str(tmp_path / "demo"), "--model", "sphere", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Dice@3" in result.output and "scan Dice" in result.output and "Ts_1" in result.output
    assert (tmp_path / "demo" / "run" / "interactions.parquet").exists()
    report = tmp_path / "demo" / "report" / "report.html"
    assert report.exists() and str(report) in result.output.replace("\n", "")
    manifest = (tmp_path / "demo" / "data" / "dataset.json").stat().st_mtime_ns
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "demo" / "data" / "dataset.json").stat().st_mtime_ns == manifest  # phantom kept


def test_demo_refuses_an_unknown_model(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--model", "spere", "--quiet"])
    assert result.exit_code == 1 and "Did you mean 'sphere'" in result.output
