"""The report end to end: a real run through the engine, then every artefact; the CLI; comparisons."""

from __future__ import annotations

import math
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.results.aggregate import load_runs, main_table, per_case_at, size_table, summary_table
from nfbench.results import _html
from nfbench.results.aggregate import RunTables
from nfbench.results.report import (
    comparison_table,
    few_cases_warnings,
    markdown_table,
    pooled_comparison_table,
    write_report,
)
from tests.results._frames import case, lc_options, lesion, lesion_free, option_runs, session, tables, write_run


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


def _six_cases_two_scenarios() -> RunTables:
    """Models a and b on six cases of lesion-corrective (a better at interaction 2 only) and lesion-single
    (a better by 0.2)."""
    rows, cases = [], []
    for n in range(6):
        for model, shift in (("a", 0.2), ("b", 0.0)):
            name = f"c{n}"
            rows += session(model, "lesion-corrective", "t", name, [0.1, 0.2 + shift * (n + 1) / 6, 0.9])
            rows += session(model, "lesion-single", "t", name, [0.3 + shift], budget=1)
            cases += [case(model, "lesion-corrective", "t", name, 0.5), case(model, "lesion-single", "t", name, 0.5, budget=1)]
    return tables(rows, [], cases)


def test_comparisons_use_the_budget_or_the_scenarios_last_interaction():
    table = comparison_table(_six_cases_two_scenarios(), budget=2).set_index("scenario")
    assert table.loc["lesion-corrective", "compared"] == "lesion Dice after 2 interaction(s)"
    assert table.loc["lesion-corrective", "rank_biserial"] == 1.0  # a is better on every case at 2
    assert table.loc["lesion-corrective", "mean_difference"] == pytest.approx(0.2 * 3.5 / 6)
    assert table.loc["lesion-single", "compared"] == "lesion Dice after 1 interaction(s)"
    assert table.loc["lesion-single", "n_cases"] == 6
    at3 = comparison_table(_six_cases_two_scenarios()).set_index("scenario")
    assert at3.loc["lesion-corrective", "mean_difference"] == 0.0 and at3.loc["lesion-corrective", "p_value"] == 1.0


def test_a_one_model_report_has_an_empty_but_headed_comparisons_table(tmp_path):
    rows = session("a", "lesion-corrective", "t", "c1", [0.5, 0.7, 0.9])
    folder = write_run(tmp_path / "run", tables(rows, [lesion("a", "lesion-corrective", "t", "c1", 1, 0.9)],
                                                [case("a", "lesion-corrective", "t", "c1", 0.9)]))
    write_report([folder], tmp_path / "report", quiet=True, dpi=30)
    comparisons = pd.read_csv(tmp_path / "report" / "tables" / "comparisons.csv")
    assert comparisons.empty and {"model_a", "model_b", "p_value", "p_holm"} <= set(comparisons.columns)
    assert "| scenario | click_policy | budget |" in (tmp_path / "report" / "tables.md").read_text()


def test_a_rewritten_report_leaves_no_figure_of_the_earlier_one(tmp_path):
    rows = session("a", "lesion-corrective", "t", "c1", [0.5, 0.7, 0.9])
    folder = write_run(tmp_path / "run", tables(rows, [lesion("a", "lesion-corrective", "t", "c1", 1, 0.9)],
                                                [case("a", "lesion-corrective", "t", "c1", 0.9)]))
    report = tmp_path / "report"
    (report / "figures").mkdir(parents=True)
    stale = report / "figures" / "overlay_gone-model_lesion-corrective.png"  # a model of the earlier report
    stale.write_bytes(b"")
    (report / "notes.txt").write_text("mine")
    write_report([folder], report, quiet=True, dpi=30)
    assert not stale.exists() and (report / "notes.txt").read_text() == "mine"
    assert (report / "figures" / "dice_lesion_curves.png").is_file()


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": [1.23456, float("nan")], "b": ["x|y", "z"]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.235 | x\\|y |", "|  | z |"]


def test_missing_counts_are_empty_cells_in_markdown_and_html_alike():
    frame = pd.DataFrame({"n": pd.array([3, None], dtype="Int64"), "s": ["x", None], "v": [0.5, float("nan")]})
    assert markdown_table(frame).splitlines()[2:] == ["| 3 | x | 0.500 |", "|  |  |  |"]  # was "| <NA> | None |"
    html = _html.table(frame)
    assert "NA" not in html and "None" not in html and "<td>3</td>" in html
    assert html.count("<td></td>") == 3


def test_a_report_prints_no_na_marker_for_levels_past_the_stop(tmp_path):
    stop = dict(stop_dice=0.8)
    rows = session("a", "lesion-corrective", "t", "c1", [0.85], **stop)
    folder = write_run(tmp_path / "run", tables(rows, [lesion("a", "lesion-corrective", "t", "c1", 1, 0.85, **stop)],
                                                [case("a", "lesion-corrective", "t", "c1", 0.85, **stop)]))
    page = write_report([folder], tmp_path / "report", quiet=True, dpi=30).read_text()
    noc = pd.read_csv(tmp_path / "report" / "tables" / "noc.csv")
    assert noc["nof_90"].isna().all()  # not measured: sessions stop at 0.8
    assert "<NA>" not in (tmp_path / "report" / "tables.md").read_text() and "&lt;NA&gt;" not in page


def test_the_column_definitions_say_what_lesion_dice_and_fp_volume_count(tmp_path):
    rows = session("a", "lesion-corrective", "t", "c1", [0.5, 0.7, 0.9])
    folder = write_run(tmp_path / "run", tables(rows, [lesion("a", "lesion-corrective", "t", "c1", 1, 0.9)],
                                                [case("a", "lesion-corrective", "t", "c1", 0.9)]))
    page = unescape(write_report([folder], tmp_path / "report", quiet=True, dpi=30).read_text())
    markdown = (tmp_path / "report" / "tables.md").read_text()
    for text in (page, markdown):
        assert "with the voxels of the scan's other lesions left out of both" in text
        assert "dice_lesion_strict" in text
        assert "components that overlap no lesion of the scan at all" in text
        assert "a component touching a lesion adds nothing, even its voxels outside the lesion" in text
        assert "fp_voxel_volume_ml" in text and "fn_voxel_volume_ml" in text


# -- too few cases for any significance, with the Holm correction (review issue 2) ----------------------------


def _comparisons(n_cases: list[int], p_values: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"n_cases": n_cases, "p_value": p_values or [0.5] * len(n_cases)})


def test_few_cases_warnings_use_the_smallest_holm_p_of_the_comparisons_made():
    assert few_cases_warnings(_comparisons([6])) == []  # alone, 6 cases can reach 0.031
    two = few_cases_warnings(_comparisons([6, 6]))  # the original said nothing: 6 is not below 6
    assert len(two) == 1 and "the 2 comparison(s) are Holm-corrected together" in two[0]
    assert "smallest p_holm would be 0.0625 ≥ 0.05" in two[0]
    assert few_cases_warnings(_comparisons([8] * 6)) == []  # 6 × 2/2^8 = 0.047
    assert len(few_cases_warnings(_comparisons([8] * 7))) == 1  # 7 × 2/2^8 = 0.055
    # rows not compared (no p-value) are not in the Holm family
    assert few_cases_warnings(_comparisons([6, 0, 0], [0.5, float("nan"), float("nan")])) == []
    small = few_cases_warnings(_comparisons([5, 9]))
    assert "1 comparison(s) rest on fewer than 6 cases (smallest n = 5)" in small[0] and len(small) == 1
    assert few_cases_warnings(_comparisons([])) == []


def test_the_report_warns_when_holm_leaves_no_comparison_a_chance(tmp_path, capsys):
    folder = write_run(tmp_path / "run", _six_cases_two_scenarios())
    page = write_report([folder], tmp_path / "report", quiet=True, dpi=30).read_text()
    err = capsys.readouterr().err
    comparisons = pd.read_csv(tmp_path / "report" / "tables" / "comparisons.csv")
    assert comparisons["n_cases"].tolist() == [6, 6]
    for text in (err, page):
        assert "smallest p_holm would be 0.0625 ≥ 0.05, so none of them can be significant" in text
    assert "fewer than 6 cases" not in err
    # the note no longer reads as if 6 cases were enough
    assert "significance at 0.05 needs 2/2^n &lt; 0.05/m" in page and "6 cases (smallest p 0.031) only as the only row" in page


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


def test_what_was_run_lists_each_runs_scenario_and_model_options(tmp_path):
    folders = option_runs(tmp_path, ("r1", "a", {"lesion-corrective": lc_options(lesions=10)}),
                          ("r2", "b", {"lesion-corrective": lc_options()}))
    page = unescape(write_report(folders, tmp_path / "report", quiet=True, dpi=30).read_text())
    header = page[page.index("<section id='run'>"):page.index("</section>")]
    # the original showed one "lesion-corrective: lesions=10" for both runs and no model options
    assert "r1 · lesion-corrective: lesions=10, interactions=3" in header
    assert "r2 · lesion-corrective: lesions=20, interactions=3" in header
    assert "<dt>model options</dt><dd>r1 · a: honour_clicks=true, device=auto<br>r2 · b: honour_clicks=true" in header
    main = pd.read_csv(tmp_path / "report" / "tables" / "main.csv")
    assert set(main["scenario"]) == {"lesion-corrective (lesions 10)", "lesion-corrective (lesions 20)"}


# -- the report read as a reviewer: prompted share, pooled comparisons (reviewer issues 1 and 4) ---------------

LC = "lesion-corrective"

def _two_test_sets() -> RunTables:
    """a and b on lesion-corrective in test sets t1 (5 cases) and t2 (4 cases); a is better by a
    case-dependent amount except on one case of t2 (worse by the smallest difference); lesion-single
    only in t1."""
    rows, cases = [], []
    for test_set, n_cases in (("t1", 5), ("t2", 4)):
        for n in range(n_cases):
            name = f"{test_set}c{n}"
            for model in ("a", "b"):
                gain = -0.005 if (test_set, n) == ("t2", 0) else 0.01 * (n + 1) + (0.05 if test_set == "t2" else 0.0)
                dice = 0.5 + (gain if model == "a" else 0.0)
                rows += session(model, LC, test_set, name, [0.2, 0.3, dice])
                cases.append(case(model, LC, test_set, name, 0.5, n_lesions=100, n_lesions_prompted=20))
                if test_set == "t1":
                    rows += session(model, "lesion-single", test_set, name, [dice], budget=1)
                    cases.append(case(model, "lesion-single", test_set, name, 0.5, budget=1))
    return tables(rows, [], cases)


def test_pooled_comparisons_test_every_case_of_every_test_set_with_their_own_holm_family():
    run = _two_test_sets()
    pooled = pooled_comparison_table(run)
    assert len(pooled) == 1  # lesion-single has one test set: no pooled row
    row = pooled.iloc[0]
    assert (row["scenario"], row["test_sets"], row["n_cases"]) == (LC, "t1, t2", 9)
    per_case = per_case_at(run.interactions, "dice_lesion", 3)
    pairs = per_case[per_case["scenario"] == LC].pivot_table(index=["test_set", "case"], columns="model",
                                                              values="dice_lesion")
    expected = sps.wilcoxon(pairs["a"], pairs["b"], zero_method="wilcox").pvalue
    assert row["p_value"] == pytest.approx(expected) and row["p_value"] < 0.05
    assert row["mean_difference"] == pytest.approx((pairs["a"] - pairs["b"]).mean())
    assert row["p_holm"] == row["p_value"]  # a family of one, apart from the three per-test-set rows
    per_set = comparison_table(run)
    assert len(per_set) == 3 and (per_set["p_value"] > row["p_value"]).all()
    assert pooled_comparison_table(tables()).empty


def test_the_report_shows_pooled_comparisons_and_the_prompted_share_with_a_caveat(tmp_path, capsys):
    page = unescape(write_report([write_run(tmp_path / "run", _two_test_sets())], tmp_path / "report", quiet=True,
                                 dpi=30).read_text())
    err = capsys.readouterr().err
    pooled = pd.read_csv(tmp_path / "report" / "tables" / "comparisons_pooled.csv")
    assert pooled["test_sets"].tolist() == ["t1, t2"]
    prompted = pd.read_csv(tmp_path / "report" / "tables" / "prompted_lesions.csv")
    assert prompted["prompted_share"].tolist() == [0.2, 0.2, 1.0]  # lesion-single's cases: 1 of 1 lesion
    markdown = (tmp_path / "report" / "tables.md").read_text()
    caveat = "lesion-corrective · t1: 20 of 100 lesions per case prompted (20%)"
    for text in (page, markdown, err):
        assert caveat in text and "lesion-corrective · t2: 20 of 100" in text and "lesion-single · t1:" not in text
    sections = {a: page[page.index(f"<section id='{a}'>"):].split("</section>")[0] for a in ("main", "detection", "comparisons_pooled")}
    assert caveat in sections["main"] and caveat in sections["detection"]
    assert "POOLED over the test sets" in sections["comparisons_pooled"] and "t1, t2" in sections["comparisons_pooled"]
    assert "## comparisons_pooled" in markdown and "## prompted_lesions" in markdown


def test_p_values_keep_their_significant_digits_in_html_and_markdown():
    frame = pd.DataFrame({"mean": [0.0004], "p_value": [0.00048828125], "p_holm": [np.nan]})
    assert markdown_table(frame).splitlines()[2] == "| 0.000 | 0.000488 |  |"  # the original wrote 0.000
    html = _html.table(frame)
    assert "<td>0.000488</td>" in html and "<td>0.000</td>" in html and html.count("<td></td>") == 1
