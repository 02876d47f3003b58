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


def test_demo_leaves_out_the_slow_dins_phantom_unless_asked(tmp_path, monkeypatch):
    import nfbench.runner.demo as demo

    asked = []

    def fake_run_demo(out, *, models, **_):
        asked.append(models)
        raise SystemExit(0)  # stop before the summary: only the choice of models is under test

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    monkeypatch.setattr("nfbench.models.registry.load_model", lambda name: None)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "dins-phantom" not in asked[0] and "sw-fastedit-phantom" in asked[0] and "sphere" in asked[0]
    assert "leaving out dins-phantom" in result.output
    CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--model", "dins-phantom", "--quiet"])
    assert asked[1] == ["dins-phantom"]
