"""The report end to end: a real run through the engine, then every artefact; the CLI; comparisons."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.results.aggregate import load_runs, main_table, per_case_at, size_table, summary_table
from nfbench.results.report import comparison_table, markdown_table, write_report
from tests.results._frames import case, lesion, lesion_free, session, tables, write_run


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
    assert "Few cases." in text and "cannot reach 0.05" in text  # one case per test set: no test can
    beyond = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "r99"), "--budget", "99"])
    assert beyond.exit_code == 1 and "--budget 99: the runs' lesion scenarios have at most" in beyond.output
    (tmp_path / "a_file").write_text("")
    on_file = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "a_file")])
    assert on_file.exit_code == 1 and "exists and is not a folder" in on_file.output


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
            rows += session(model, "lesion-single", "t", name, [0.3 + shift], budget=1)
            cases += [case(model, "lesion-corrective", "t", name, 0.5), case(model, "lesion-single", "t", name, 0.5, budget=1)]
    table = comparison_table(tables(rows, [], cases), budget=2).set_index("scenario")
    assert table.loc["lesion-corrective", "compared"] == "lesion Dice after 2 interaction(s)"
    assert table.loc["lesion-corrective", "rank_biserial"] == 1.0  # a is better on every case at 2
    assert table.loc["lesion-corrective", "mean_difference"] == pytest.approx(0.2 * 3.5 / 6)
    assert table.loc["lesion-single", "compared"] == "lesion Dice after 1 interaction(s)"
    assert table.loc["lesion-single", "n_cases"] == 6
    at3 = comparison_table(tables(rows, [], cases)).set_index("scenario")
    assert at3.loc["lesion-corrective", "mean_difference"] == 0.0 and at3.loc["lesion-corrective", "p_value"] == 1.0


def test_a_one_model_report_has_an_empty_but_headed_comparisons_table(tmp_path):
    rows = session("a", "lesion-corrective", "t", "c1", [0.5, 0.7, 0.9])
    folder = write_run(tmp_path / "run", tables(rows, [lesion("a", "lesion-corrective", "t", "c1", 1, 0.9)],
                                                [case("a", "lesion-corrective", "t", "c1", 0.9)]))
    write_report([folder], tmp_path / "report", quiet=True, dpi=30)
    comparisons = pd.read_csv(tmp_path / "report" / "tables" / "comparisons.csv")
    assert comparisons.empty and {"model_a", "model_b", "p_value", "p_holm"} <= set(comparisons.columns)
    assert "| scenario | click_policy | budget |" in (tmp_path / "report" / "tables.md").read_text()


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


def test_comparisons_keep_protocols_apart_and_stop_at_each_budget():
    # a beats b by 0.1 on every case at every interaction of the budget-5 runs; the budget-3 runs are tied.
    rows, cases = [], []
    for n in range(5):
        for model, shift in (("a", 0.1), ("b", 0.0)):
            rows += session(model, "lesion-corrective", "t", f"c{n}", [0.1, 0.2, 0.3], budget=3, run_id="r3")
            rows += session(model, "lesion-corrective", "t", f"c{n}", [0.1 + shift] * 5, budget=5, run_id="r5")
            cases += [case(model, "lesion-corrective", "t", f"c{n}", 0.5, budget=b, run_id=f"r{b}") for b in (3, 5)]
    table = comparison_table(tables(rows, [], cases), budget=5)
    assert len(table) == 2  # the original compared one average of the two protocols
    table = table.set_index("budget")
    assert sorted(table.index) == [3, 5] and (table["n_cases"] == 5).all()
    assert table.loc[3, "compared"] == "lesion Dice after 3 interaction(s)" and table.loc[3, "p_value"] == 1.0
    assert table.loc[5, "compared"] == "lesion Dice after 5 interaction(s)"
    assert table.loc[5, "mean_difference"] == pytest.approx(0.1) and table.loc[5, "rank_biserial"] == 1.0


def test_report_tables_and_page_show_capped_hd95_lesion_free_scans_and_cvpr_scores(tmp_path):
    cvpr = {"auc_dice_cvpr": 3.2, "auc_nsd_cvpr": 2.4, "nsd_lesion": 0.7, "nsd_cvpr_lesion": 0.7}
    les = [lesion("m", "lesion-corrective", "t", "c1", 1, 0.9, hd95_lesion_mm=math.inf, **cvpr)]
    rows = session("m", "lesion-corrective", "t", "c1", [0.9]) + lesion_free("m", "lesion-corrective", "t", "c2")
    cases = [case("m", "lesion-corrective", "t", "c1", 0.9, hd95_scan_mm=math.inf, diagonal_mm=250.0, nsd_cvpr_scan=0.6),
             case("m", "lesion-corrective", "t", "c2", 1.0, hd95_scan_mm=0.0, diagonal_mm=350.0, n_lesions=0,
                  n_lesions_prompted=0, nsd_cvpr_scan=1.0)]
    folder = write_run(tmp_path / "run", tables(rows, les, cases))
    page = write_report([folder], tmp_path / "report", quiet=True, dpi=30).read_text()
    main = pd.read_csv(tmp_path / "report" / "tables" / "main.csv").iloc[0]
    assert main["n_lesion_free"] == 1 and main["n_hd95_scan_inf"] == 1 and main["n_hd95_lesion_inf"] == 1
    assert main["hd95_scan_mm"] == 0.0 and main["hd95_scan_mm_capped"] == 125.0  # (250 + 0) / 2
    assert math.isnan(main["hd95_lesion_mm"]) and main["hd95_lesion_mm_capped"] == 250.0
    assert (main["auc_dice_cvpr"], main["auc_nsd_cvpr"], main["nsd_cvpr_scan"]) == (3.2, 2.4, 0.8)
    assert "replaced by the image diagonal in mm" in page and "n_lesion_free" in page and "range 0–4" in page
