"""The report end to end: a real run through the engine, then every artefact; the CLI; comparisons."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.results.aggregate import load_runs, main_table, per_case_at, size_table, summary_table
from nfbench.results.report import comparison_table, markdown_table, write_report
from tests.results._frames import case, session, tables, write_run


@pytest.fixture
def run(oracle_run):
    return oracle_run


def test_after_n_interactions_on_a_real_run(run):
    tables_ = load_runs([run])
    inter = tables_.interactions
    lesion = inter[inter["lesion_id"] > 0]
    # The oracle stops at Dice 1.0 after one click; the rows after it are carried forward and count.
    at3 = per_case_at(lesion, "dice_lesion", 3)
    expected = lesion[lesion["interaction"] == 3].groupby(["model", "scenario", "test_set", "case"])["dice_lesion"].mean()
    assert sorted(at3["dice_lesion"]) == sorted(expected)
    assert (lesion["carried_forward"] & (lesion["interaction"] > 1)).any()
    summary = summary_table(tables_).set_index(["model", "scenario", "test_set"])
    assert summary.loc[("oracle", "lesion-corrective", "imagesTs_1"), "lesion Dice @3"] == 1.0
    assert summary.loc[("half", "lesion-corrective", "imagesTs_1"), "lesion Dice @1"] < 1.0
    assert summary["cases"].eq(1).all()


def test_main_and_size_tables_on_a_real_run(run):
    tables_ = load_runs([run])
    main = main_table(tables_).set_index(["model", "scenario", "test_set"])
    assert main.loc[("oracle", "lesion-corrective", "imagesTs_2"), "dice_lesion_at_3_mean"] == 1.0
    assert main["n_failed"].eq(0).all()
    sizes = size_table(tables_.lesions)
    assert set(sizes["size_bin"]) <= {"< 1 ml", "1–10 ml", "> 10 ml"}
    assert sizes.groupby(["model", "scenario", "test_set"])["n_lesions"].sum().max() <= 5


def test_report_command_writes_every_artefact(run, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--budget", "2", "--dpi", "40", "--quiet"])
    assert result.exit_code == 0, result.output
    html = out / "report.html"
    assert str(html) in result.output.replace("\n", "")
    text = html.read_text()
    figures = sorted(p.stem for p in (out / "figures").glob("*.png"))
    for name in ("dice_lesion_curves", "dice_scan_curves", "dice_by_lesion_size", "noc", "detection_f1", "latency",
                 "overlay_oracle_lesion-corrective", "overlay_half_global-corrective"):
        assert name in figures and (out / "figures" / f"{name}.svg").exists()
    # self-contained: every figure inlined, nothing fetched from elsewhere
    assert text.count("src='data:image/png;base64,") == len(figures)
    assert not re.search(r"""(src|href)=['"](?!data:|#)""", text)
    assert "<link" not in text and "@import" not in text
    for fact in ("oracle", "half", "lesion-corrective", "global-corrective", "center", "nfbench", "imagesTs_2"):
        assert fact in text
    sheets = pd.read_excel(out / "tables.xlsx", sheet_name=None)
    assert {"summary", "main", "comparisons", "lesion_size", "noc", "curves_lesion", "curves_scan"} <= set(sheets)
    for name in sheets:
        assert (out / "tables" / f"{name}.csv").exists()
    assert "dice_lesion_at_2_mean" in sheets["main"].columns
    assert "| model | scenario | test_set |" in (out / "tables.md").read_text()
    comparisons = sheets["comparisons"]
    assert set(comparisons["scenario"]) == {"lesion-corrective", "global-corrective"}
    assert (comparisons["model_a"] == "half").all() and (comparisons["mean_difference"] <= 0).all()


def test_report_command_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "not a run folder" in result.output and "nfbench evaluate" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r"), "--budget", "0"])
    assert result.exit_code == 1 and "--budget" in result.output


def test_comparisons_use_the_budget_or_the_scenarios_last_interaction():
    rows, cases = [], []
    for n in range(6):
        for model, shift in (("a", 0.2), ("b", 0.0)):
            name = f"c{n}"
            rows += session(model, "lesion-corrective", "t", name, [0.1, 0.2 + shift * (n + 1) / 6, 0.9])
            rows += session(model, "lesion-single", "t", name, [0.3 + shift])
            cases += [case(model, s, "t", name, 0.5) for s in ("lesion-corrective", "lesion-single")]
    table = comparison_table(tables(rows, [], cases), budget=2).set_index("scenario")
    assert table.loc["lesion-corrective", "compared"] == "lesion Dice after 2 interaction(s)"
    assert table.loc["lesion-corrective", "rank_biserial"] == 1.0  # a is better on every case at 2
    assert table.loc["lesion-corrective", "mean_difference"] == pytest.approx(0.2 * 3.5 / 6)
    assert table.loc["lesion-single", "compared"] == "lesion Dice after 1 interaction(s)"
    assert table.loc["lesion-single", "n_cases"] == 6
    at3 = comparison_table(tables(rows, [], cases)).set_index("scenario")
    assert at3.loc["lesion-corrective", "mean_difference"] == 0.0 and at3.loc["lesion-corrective", "p_value"] == 1.0


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": [1.23456, float("nan")], "b": ["x|y", "z"]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.235 | x\\|y |", "|  | z |"]


def test_report_of_a_run_whose_cases_all_failed(tmp_path):
    failed = [case("a", "lesion-corrective", "t", f"c{n}", float("nan"), status="failed") for n in range(2)]
    folder = write_run(tmp_path / "run", tables([], [], failed))
    html = write_report([folder], tmp_path / "report", quiet=True, dpi=30)
    text = html.read_text()
    assert "Failed cases" in text and "boom" in text
    main = pd.read_csv(tmp_path / "report" / "tables" / "main.csv")
    assert main[["n_cases", "n_failed"]].values.tolist() == [[0, 2]]
