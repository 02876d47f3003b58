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


def test_demo_runs_the_slow_models_on_one_case_unless_asked(tmp_path, monkeypatch):
    import nfbench.runner.demo as demo

    asked = []

    def fake_run_demo(out, *, models, slow, **_):
        asked.append((models, slow))
        raise SystemExit(0)  # stop before the summary: only the choice of models is under test

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    monkeypatch.setattr("nfbench.models.registry.load_model", lambda name: None)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    models, slow = asked[0]
    assert {"dins-phantom", "litemedsam", "simpleclick-stcn-phantom"} <= set(slow)
    assert not set(slow) & set(models)
    assert "sw-fastedit-phantom" in models and "sphere" in models
    assert "dins-phantom runs on one case only" in result.output
    CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--model", "dins-phantom", "--quiet"])
    assert asked[1] == (["dins-phantom"], ())


def test_the_short_run_puts_the_slow_model_beside_the_others_on_one_case(tmp_path):
    from nfbench.models.registry import load_model
    from nfbench.results.aggregate import load_runs, summary_table
    from nfbench.runner.demo import DEMO_LESIONS, SHORT_TEST_SET, run_demo

    loaded = {name: load_model(name) for name in ("sphere", "region-grow")}
    result = run_demo(tmp_path, models=["sphere"], loaded=loaded, slow=("region-grow",), quiet=True)
    full, short = summary_table(load_runs([result.run])), summary_table(load_runs([result.short_run]))
    assert set(full["model"]) == {"sphere"} and len(full) == 4  # 2 scenarios x 2 test sets
    assert set(short["model"]) == {"sphere", "region-grow"}
    assert set(short["scenario"]) == {"lesion-corrective"} and set(short["test_set"]) == {SHORT_TEST_SET}
    assert (short["cases"] == 1).all()
    on_case = full[(full["scenario"] == "lesion-corrective") & (full["test_set"] == SHORT_TEST_SET)]
    assert on_case["cases"].item() == 2  # the full run keeps every case
    prompted = load_runs([result.run]).lesions.query("scenario == 'lesion-corrective'").groupby("case").size()
    assert prompted.max() == DEMO_LESIONS  # the high-burden cases have far more lesions
