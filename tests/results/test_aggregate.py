"""Aggregation on hand-made tables whose answers can be worked out on paper."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nfbench.results.aggregate import (
    RunTables,
    config_summary,
    curves,
    fold_table,
    load_runs,
    main_table,
    noc_table,
    per_case_at,
    prompted_table,
    prompted_text,
    size_table,
    summary_table,
)
from nfbench.results.report import comparison_table
from nfbench.results.store import RunError
from tests.results._frames import case, lc_options, lesion, lesion_free, option_runs, session, tables, write_run

LC, GC = "lesion-corrective", "global-corrective"


def _at(frame: pd.DataFrame, value: str, **where) -> float:
    hit = frame
    for column, wanted in where.items():
        hit = hit[hit[column] == wanted]
    assert len(hit) == 1, hit
    return float(hit[value].iloc[0])


def test_after_n_interactions_is_the_row_numbered_n_whatever_the_row_order():
    rows = session("m", LC, "t", "c1", [0.2, 0.5, 0.9])
    shuffled = tables(interactions=[rows[2], rows[0], rows[1]]).interactions
    assert per_case_at(shuffled, "dice_lesion", 3)["dice_lesion"].tolist() == [0.9]
    assert per_case_at(shuffled, "dice_lesion", 2)["dice_lesion"].tolist() == [0.5]  # the original read this as "3"
    assert per_case_at(shuffled, "dice_lesion", 1)["dice_lesion"].tolist() == [0.2]
    assert per_case_at(shuffled, "dice_lesion")["dice_lesion"].tolist() == [0.9]  # the last row
    assert per_case_at(shuffled, "dice_lesion", 4).empty  # no session has a fourth interaction


def test_early_stopped_cases_stay_in_the_curve_with_their_last_value():
    # c1 stopped after one interaction at 0.9 (the engine carried it to the budget); c2 used all three.
    inter = tables(interactions=session("m", GC, "t", "c1", [0.9], lesion_id=0, budget=3)
                   + session("m", GC, "t", "c2", [0.1, 0.3, 0.5], lesion_id=0)).interactions
    curve = curves(inter, level="scan")
    assert curve["interaction"].tolist() == [1, 2, 3]
    assert curve["n_cases"].tolist() == [2, 2, 2]  # the original dropped c1 after its stop
    np.testing.assert_allclose(curve["mean"], [0.5, 0.6, 0.7])
    assert curves(inter, level="lesion").empty


def test_a_case_counts_once_however_many_lesions_it_has():
    rows = [r for n in range(1, 5) for r in session("m", LC, "t", "c1", [1.0], lesion_id=n)]
    rows += session("m", LC, "t", "c2", [0.0], lesion_id=1)
    les = [lesion("m", LC, "t", "c1", n, 1.0) for n in range(1, 5)] + [lesion("m", LC, "t", "c2", 1, 0.0)]
    run = tables(rows, les, [case("m", LC, "t", "c1", 1.0), case("m", LC, "t", "c2", 0.0)])
    main = main_table(run, budget=1)
    assert _at(main, "dice_lesion_at_1_mean", model="m") == 0.5  # pooling lesions would give 0.8
    assert _at(main, "dice_lesion_at_1_std", model="m") == pytest.approx(math.sqrt(0.5))  # std of [1, 0], ddof 1
    assert _at(main, "dice_lesion_at_1_ci_low", model="m") == 0.0
    assert _at(main, "dice_lesion_at_1_ci_high", model="m") == 1.0


def test_folds_average_within_a_case_and_their_spread_is_reported_apart():
    values = {("c1", 1): 0.2, ("c1", 2): 0.4, ("c2", 1): 0.6, ("c2", 2): 0.8}
    rows, cases = [], []
    for (name, fold), v in values.items():
        rows += session("m", LC, "t", name, [v], fold=fold, run_id=f"f{fold}")
        cases.append(case("m", LC, "t", name, v, fold=fold, run_id=f"f{fold}"))
    run = tables(rows, [], cases)
    main = main_table(run, budget=1)
    # per case over folds: 0.3 and 0.7; mean 0.5, between-case std = 0.4 / √2 (the original averaged
    # the across-fold stds instead: 0.1); two cases, not four.
    assert _at(main, "dice_lesion_at_1_mean", model="m") == pytest.approx(0.5)
    assert _at(main, "dice_lesion_at_1_std", model="m") == pytest.approx(0.4 / math.sqrt(2))
    assert _at(main, "n_cases", model="m") == 4 and per_case_at(run.interactions, "dice_lesion", 1).shape[0] == 2
    folds = fold_table(run, budget=1)
    # fold means 0.4 and 0.6 → 0.5 ± 0.1414
    assert _at(folds, "fold_mean", metric="dice_lesion_at_1") == pytest.approx(0.5)
    assert _at(folds, "fold_std", metric="dice_lesion_at_1") == pytest.approx(0.2 / math.sqrt(2))
    assert _at(folds, "n_folds", metric="dice_scan_final") == 2
    assert fold_table(tables(session("m", LC, "t", "c1", [0.5]), [], [case("m", LC, "t", "c1", 0.5)])).empty


def test_lesion_size_strata_have_closed_lower_edges():
    volumes = {1: 0.5, 2: 1.0, 3: 9.99, 4: 10.0, 5: 25.0}
    dice = {1: 0.1, 2: 0.2, 3: 0.4, 4: 0.8, 5: 1.0}
    les = [lesion("m", LC, "t", "c1", n, dice[n], volume_ml=v) for n, v in volumes.items()]
    les.append(lesion("m", LC, "t", "c2", 1, 0.6, volume_ml=50.0))
    table = size_table(tables(lesions=les).lesions)
    assert table["size_bin"].tolist() == ["< 1 ml", "1–10 ml", "> 10 ml"]
    assert table["n_lesions"].tolist() == [1, 2, 3]
    assert table["n_cases"].tolist() == [1, 1, 2]
    # > 10 ml: c1 has 0.8 and 1.0 → 0.9, c2 has 0.6 → mean 0.75
    np.testing.assert_allclose(table["mean"], [0.1, 0.3, 0.75])


def test_noc_is_averaged_per_case_and_nof_counts_lesions():
    les = [lesion("m", LC, "t", "c1", 1, 1.0, noc=(1, 1, 1)),
           lesion("m", LC, "t", "c1", 2, 0.5, noc=(3, 3, 3), reached=(False, False, False)),
           lesion("m", LC, "t", "c2", 1, 0.85, noc=(2, 3, 3), reached=(True, True, False))]
    cases = [case("m", GC, "t", "c1", 0.9, noc_80_scan=4, noc_85_scan=6, noc_90_scan=60),
             case("m", GC, "t", "c2", 0.9, noc_80_scan=2, noc_85_scan=2, noc_90_scan=60)]
    inter = session("m", GC, "t", "c1", [0.9], lesion_id=0) + session("m", GC, "t", "c2", [0.9], lesion_id=0)
    table = noc_table(tables(inter, les, cases)).set_index("level")
    # c1: (1 + 3) / 2 = 2, c2: 2 → NoC@80 = 2; NoC@90: c1 2, c2 3 → 2.5
    assert table.loc["lesion", "noc_80"] == 2.0 and table.loc["lesion", "noc_90"] == 2.5
    assert (table.loc["lesion", ["nof_80", "nof_85", "nof_90"]] == [1, 1, 2]).all()
    assert table.loc["lesion", "n_lesions"] == 3
    assert table.loc["scan", "noc_80"] == 3.0 and table.loc["scan", "noc_90"] == 60.0


def test_scan_nof_counts_scans_and_levels_past_the_stop_are_not_measured():
    stop = dict(stop_dice=0.8, budget=3)
    inter = (session("m", GC, "t", "c1", [0.7, 0.85], lesion_id=0, **stop)
             + session("m", GC, "t", "c2", [0.5, 0.6, 0.7], lesion_id=0, **stop)
             + lesion_free("m", GC, "t", "c3", **stop))
    cases = [case("m", GC, "t", "c1", 0.85, noc_80_scan=2, noc_85_scan=2, noc_90_scan=3, **stop),
             case("m", GC, "t", "c2", 0.7, noc_80_scan=3, noc_85_scan=3, noc_90_scan=3, **stop)]
    row = noc_table(tables(inter, [], cases)).set_index("level").loc["scan"]
    assert row["noc_80"] == 2.5 and row["nof_80"] == 1 and row["n_scans"] == 2  # the lesion-free scan is not one
    assert pd.isna(row["noc_85"]) and pd.isna(row["nof_85"]) and pd.isna(row["noc_90"]) and pd.isna(row["nof_90"])


def test_summary_table_reads_after_1_and_3_and_the_stop():
    rows = session("a", LC, "t", "c1", [0.5, 0.7, 0.8], latency_ms=20.0)
    rows += session("a", LC, "t", "c2", [0.9], budget=3, latency_ms=40.0)  # stopped early
    rows += session("a", "lesion-single", "t", "c1", [0.4], budget=1)
    rows += session("a", GC, "t", "c1", [0.3, 0.85], lesion_id=0, budget=5)
    cases = [case("a", LC, "t", "c1", 0.5), case("a", LC, "t", "c2", 0.5), case("a", "lesion-single", "t", "c1", 0.5, budget=1),
             case("a", GC, "t", "c1", 0.5, budget=5, n_interactions=2)]
    summary = summary_table(tables(rows, [], cases)).set_index("scenario")
    assert summary.loc[LC, "lesion Dice @1"] == pytest.approx(0.7)   # (0.5 + 0.9) / 2
    assert summary.loc[LC, "lesion Dice @3"] == pytest.approx(0.85)  # (0.8 + 0.9) / 2, c2 carried
    assert summary.loc[LC, "latency ms"] == pytest.approx(30.0)      # carried rows have no latency
    assert summary.loc["lesion-single", "lesion Dice @1"] == 0.4
    assert math.isnan(summary.loc["lesion-single", "lesion Dice @3"])  # budget 1: undefined
    assert summary.loc[GC, "scan Dice at stop"] == 0.85
    assert summary.loc[GC, "interactions used"] == 2
    assert math.isnan(summary.loc[LC, "scan Dice at stop"])


def test_main_table_counts_failed_cases_apart():
    rows = session("a", LC, "t", "c1", [0.5, 0.6, 0.7])
    cases = [case("a", LC, "t", "c1", 0.7), case("a", LC, "t", "c2", math.nan, status="failed")]
    main = main_table(tables(rows, [], cases))
    assert _at(main, "n_cases", model="a") == 1 and _at(main, "n_failed", model="a") == 1
    assert _at(main, "dice_lesion_at_3_mean", model="a") == 0.7 and _at(main, "dice_lesion_final_mean", model="a") == 0.7
    assert _at(main, "dice_scan_final_mean", model="a") == 0.7


def test_load_runs_concatenates_and_refuses_what_is_not_a_run(tmp_path):
    one = write_run(tmp_path / "one", tables(session("a", LC, "t", "c1", [0.5]), [], [case("a", LC, "t", "c1", 0.5)]))
    two = write_run(tmp_path / "two", tables(session("b", LC, "t", "c1", [0.7], run_id="r2"), [],
                                             [case("b", LC, "t", "c1", 0.7, run_id="r2")]), run_id="r2")
    run = load_runs([one, two])
    assert sorted(run.cases["model"]) == ["a", "b"] and len(run.configs) == 2
    with pytest.raises(RunError, match="already given"):
        load_runs([one, one])
    with pytest.raises(RunError, match="not a run folder"):
        load_runs([tmp_path])
    with pytest.raises(RunError, match="no run folder"):
        load_runs([])


def test_runs_with_different_click_policies_are_not_averaged_together(tmp_path):
    def run(name: str, policy: str, value: float) -> RunTables:
        keys = {"run_id": name, "policy": policy}
        return tables(session("a", LC, "t", "c1", [value], **keys), [], [case("a", LC, "t", "c1", value, **keys)])

    one = write_run(tmp_path / "one", run("r1", "center", 0.5), run_id="r1")
    two = write_run(tmp_path / "two", run("r2", "uniform", 0.7), run_id="r2")
    summary = summary_table([one, two]).set_index("scenario")
    assert summary.loc[f"{LC} (center)", "lesion Dice @1"] == 0.5
    assert summary.loc[f"{LC} (uniform)", "lesion Dice @1"] == 0.7


# -- protocols, budgets, HD95 = ∞, lesion-free scans, cvpr25 scores (issue 7) --------------------------------


def _two_budgets() -> RunTables:
    """One model, one case, lesion-corrective run once with budget 3 and once with budget 5."""
    rows = (session("m", LC, "t", "c1", [0.2, 0.4, 0.6], budget=3, run_id="r3")
            + session("m", LC, "t", "c1", [0.2, 0.4, 0.6, 0.8, 1.0], budget=5, run_id="r5"))
    cases = [case("m", LC, "t", "c1", 0.6, budget=3, run_id="r3"), case("m", LC, "t", "c1", 1.0, budget=5, run_id="r5")]
    return tables(rows, [], cases)


def test_runs_with_different_budgets_are_separate_rows_and_stop_at_their_budget():
    main = main_table(_two_budgets(), budget=5)
    assert len(main) == 2  # the original averaged the two runs into one row
    assert sorted(main["budget"]) == [3, 5] and main["n_cases"].tolist() == [1, 1]
    # budget 3: nothing after 5 (the original carried 0.6 to "after 5" and averaged the two runs: 0.8)
    assert math.isnan(_at(main, "dice_lesion_at_5_mean", budget=3))
    assert _at(main, "dice_lesion_final_mean", budget=3) == 0.6
    assert _at(main, "dice_lesion_at_5_mean", budget=5) == 1.0 and _at(main, "dice_lesion_final_mean", budget=5) == 1.0
    assert _at(main, "dice_lesion_at_1_mean", budget=3) == _at(main, "dice_lesion_at_1_mean", budget=5) == 0.2
    curve = curves(_two_budgets().interactions, level="lesion")
    assert curve[curve["budget"] == 3]["interaction"].tolist() == [1, 2, 3]  # no curve past its budget
    np.testing.assert_allclose(curve[curve["budget"] == 3]["mean"], [0.2, 0.4, 0.6])
    np.testing.assert_allclose(curve[curve["budget"] == 5]["mean"], [0.2, 0.4, 0.6, 0.8, 1.0])


def test_load_runs_labels_each_protocol_by_what_differs(tmp_path):
    runs = {"r1": dict(policy="center", budget=3), "r2": dict(policy="center", budget=5),
            "r3": dict(policy="uniform", budget=3, stop_dice=0.9)}
    folders = []
    for n, (run_id, keys) in enumerate(runs.items()):
        scan = f"s{n}"  # each run's global-corrective scan is another case: the runs hold distinct results
        run = tables(session("m", LC, "t", "c1", [0.5], run_id=run_id, **keys) + session("m", GC, "t", scan, [0.5], lesion_id=0, run_id=run_id),
                     [], [case("m", LC, "t", "c1", 0.5, run_id=run_id, **keys), case("m", GC, "t", scan, 0.5, run_id=run_id)])
        folders.append(write_run(tmp_path / run_id, run, run_id=run_id))
    loaded = load_runs(folders)
    labels = {"r1": f"{LC} (center, budget 3, no stop)", "r2": f"{LC} (center, budget 5, no stop)",
              "r3": f"{LC} (uniform, budget 3, stop 0.9)"}
    for name in ("interactions", "cases"):
        frame = loaded.__getattribute__(name)
        lc = frame[frame["scenario"] != GC]
        assert dict(zip(lc["run_id"], lc["scenario"])) == labels
    assert set(summary_table(loaded)["scenario"]) == {*labels.values(), GC}  # GC: one protocol, three runs
    assert _at(summary_table(loaded), "cases", scenario=GC) == 3


def test_runs_holding_the_same_case_result_are_refused(tmp_path):
    folders = []
    for run_id, cases in (("a", ("c1", "c2")), ("b", ("c2", "c3"))):
        run = tables([row for c in cases for row in session("m", LC, "t", c, [0.5], run_id=run_id)], [],
                     [case("m", LC, "t", c, 0.5, run_id=run_id) for c in cases])
        folders.append(write_run(tmp_path / run_id, run, run_id=run_id))
    with pytest.raises(RunError, match=r"1 case result\(s\) are in more than one run \(first: m, .*t/c2 in .*a and .*b\)"):
        load_runs(folders)


def test_a_run_whose_sessions_stop_before_their_budget_is_refused(tmp_path):
    rows = session("m", LC, "t", "c1", [0.5, 0.7], budget=3)[:2]  # not padded to its budget
    folder = write_run(tmp_path / "run", tables(rows, [], [case("m", LC, "t", "c1", 0.7)]))
    with pytest.raises(RunError, match="one row per interaction up to their budget"):
        load_runs([folder])


def test_infinite_hd95_is_counted_and_capped_at_the_image_diagonal():
    cases = [case("m", LC, "t", "c1", 0.5, hd95_scan_mm=10.0, diagonal_mm=300.0),
             case("m", LC, "t", "c2", 0.0, hd95_scan_mm=math.inf, diagonal_mm=400.0)]
    les = [lesion("m", LC, "t", "c1", 1, 0.9, hd95_lesion_mm=4.0), lesion("m", LC, "t", "c1", 2, 0.0, hd95_lesion_mm=math.inf),
           lesion("m", LC, "t", "c2", 1, 0.0, hd95_lesion_mm=2.0)]
    rows = [r for n in (1, 2) for r in session("m", LC, "t", "c1", [0.5], lesion_id=n)] + session("m", LC, "t", "c2", [0.0])
    main = main_table(tables(rows, les, cases))
    assert _at(main, "hd95_scan_mm", model="m") == 10.0            # finite values only
    assert _at(main, "n_hd95_scan_inf", model="m") == 1
    assert _at(main, "hd95_scan_mm_capped", model="m") == 205.0    # (10 + 400) / 2
    assert _at(main, "hd95_lesion_mm", model="m") == 3.0           # c1: 4, c2: 2
    assert _at(main, "n_hd95_lesion_inf", model="m") == 1
    assert _at(main, "hd95_lesion_mm_capped", model="m") == 77.0   # c1: (4 + 300) / 2 = 152, c2: 2


def test_lesion_free_scans_are_counted_and_in_scan_curves_only():
    rows = session("m", GC, "t", "c1", [0.4, 0.8], lesion_id=0) + lesion_free("m", GC, "t", "c2")
    rows += session("m", LC, "t", "c1", [0.3, 0.6, 0.9]) + lesion_free("m", LC, "t", "c2")
    cases = [case("m", s, "t", "c1", 0.8, n_interactions=2) for s in (GC, LC)]
    cases += [case("m", s, "t", "c2", 1.0, n_lesions=0, n_lesions_prompted=0, n_interactions=0) for s in (GC, LC)]
    run = tables(rows, [lesion("m", LC, "t", "c1", 1, 0.9)], cases)
    scan = curves(run.interactions, level="scan")
    assert set(scan["scenario"]) == {GC}  # a lesion scenario has no scan curve, lesion-free case or not
    assert scan["n_cases"].tolist() == [2, 2, 2]
    np.testing.assert_allclose(scan["mean"], [0.7, 0.9, 0.9])  # c1 0.4, 0.8, 0.8; c2 1.0 throughout
    lesion_curve = curves(run.interactions, level="lesion")
    assert lesion_curve["n_cases"].tolist() == [1, 1, 1]
    np.testing.assert_allclose(lesion_curve["mean"], [0.3, 0.6, 0.9])
    main = main_table(run)
    assert _at(main, "n_lesion_free", scenario=GC) == 1 and _at(main, "n_lesion_free", scenario=LC) == 1
    assert _at(main, "dice_scan_final_mean", scenario=GC) == 0.9
    assert _at(summary_table(run), "interactions used", scenario=GC) == 1.0  # (2 + 0) / 2


def test_cvpr25_scores_are_in_the_main_table_only_when_a_run_has_them():
    les = [lesion("m", LC, "t", "c1", 1, 0.9, nsd_lesion=0.8, nsd_cvpr_lesion=0.8, auc_dice_cvpr=3.5, auc_nsd_cvpr=3.0),
           lesion("m", LC, "t", "c1", 2, 0.1, nsd_lesion=0.4, nsd_cvpr_lesion=0.0, auc_dice_cvpr=0.5, auc_nsd_cvpr=0.0),
           lesion("m", LC, "t", "c2", 1, 0.5, nsd_lesion=0.6, nsd_cvpr_lesion=0.6, auc_dice_cvpr=2.0, auc_nsd_cvpr=2.0)]
    cases = [case("m", LC, "t", "c1", 0.5, nsd_scan=0.5, nsd_cvpr_scan=0.5),
             case("m", LC, "t", "c2", 0.1, nsd_scan=0.3, nsd_cvpr_scan=0.0)]
    rows = [r for n in (1, 2) for r in session("m", LC, "t", "c1", [0.5], lesion_id=n)] + session("m", LC, "t", "c2", [0.5])
    main = main_table(tables(rows, les, cases))
    # per case first: c1 (3.5 + 0.5) / 2 = 2 and c2 2 → 2; NSD-AUC c1 1.5, c2 2 → 1.75
    assert _at(main, "auc_dice_cvpr", model="m") == 2.0 and _at(main, "auc_nsd_cvpr", model="m") == 1.75
    assert _at(main, "nsd_lesion", model="m") == pytest.approx(0.6)      # c1 0.6, c2 0.6
    assert _at(main, "nsd_cvpr_lesion", model="m") == pytest.approx(0.5)  # c1 0.4, c2 0.6
    assert _at(main, "nsd_scan", model="m") == pytest.approx(0.4) and _at(main, "nsd_cvpr_scan", model="m") == 0.25
    columns = list(main.columns)
    assert columns.index("nsd_cvpr_lesion") == columns.index("nsd_lesion") + 1  # the gated NSD next to ours
    plain = main_table(tables(rows, [lesion("m", LC, "t", "c1", n, 0.5) for n in (1, 2)] + [lesion("m", LC, "t", "c2", 1, 0.5)],
                              [case("m", LC, "t", "c1", 0.5), case("m", LC, "t", "c2", 0.5)]))
    assert not [c for c in plain.columns if "cvpr" in c or "gpu" in c]  # no empty columns


def test_a_run_without_the_protocol_columns_is_refused(tmp_path):
    folder = write_run(tmp_path / "run", tables(session("m", LC, "t", "c1", [0.5]), [], [case("m", LC, "t", "c1", 0.5)]))
    for name in ("interactions", "cases"):
        path = folder / f"{name}.parquet"
        pd.read_parquet(path).drop(columns=["budget", "stop_dice"]).to_parquet(path)
    with pytest.raises(RunError, match="interactions table lacks the columns budget, stop_dice"):
        load_runs([folder])


# -- scenario options (lesions K, alpha, boxes, preset) and what the header lists (review issue 1) -----------


def test_runs_whose_scenario_options_differ_are_separate_protocols(tmp_path):
    k10, k20 = option_runs(tmp_path, ("r1", "a", {LC: lc_options(lesions=10)}), ("r2", "b", {LC: lc_options()}))
    loaded = load_runs([k10, k20])
    labels = {"r1": f"{LC} (lesions 10)", "r2": f"{LC} (lesions 20)"}
    for name in ("interactions", "cases"):
        frame = getattr(loaded, name)
        assert dict(zip(frame["run_id"], frame["scenario"])) == labels
    assert comparison_table(loaded).empty  # the original compared a (lesions 10) with b (lesions 20) in one row
    assert len(main_table(loaded)) == 2
    same = load_runs(option_runs(tmp_path / "same", ("s1", "a", {LC: lc_options()}), ("s2", "b", {LC: lc_options()})))
    assert set(same.cases["scenario"]) == {LC} and len(comparison_table(same)) == 1


def test_the_same_cases_under_other_scenario_options_are_not_counted_twice(tmp_path):
    # a grid keys its options by protocol label; the same model and cases under another alpha
    folders = option_runs(tmp_path, ("r1", "a", {LC: lc_options()}),
                          ("r3", "a", {f"{LC} (center, budget 3, stop none)": lc_options(alpha=4.0)}))
    loaded = load_runs(folders)  # the original refused: "case result(s) are in more than one run"
    assert dict(zip(loaded.cases["run_id"], loaded.cases["scenario"])) == {"r1": f"{LC} (alpha 8)", "r3": f"{LC} (alpha 4)"}
    assert main_table(loaded)["n_cases"].tolist() == [6, 6]


def test_a_run_that_recorded_no_scenario_options_is_not_taken_for_equal(tmp_path):
    folders = option_runs(tmp_path, ("r1", "a", {LC: lc_options()}), ("r2", "b", {}))
    labels = load_runs(folders).cases.drop_duplicates("run_id").set_index("run_id")["scenario"]
    assert labels.to_dict() == {"r1": LC, "r2": f"{LC} (options not recorded)"}
    partly = option_runs(tmp_path / "partly", ("p1", "a", {LC: lc_options()}), ("p2", "b", {LC: lc_options(boxes=None)}))
    assert set(load_runs(partly).cases["scenario"]) == {f"{LC} (boxes no)", f"{LC} (boxes unknown)"}


def test_config_summary_lists_each_runs_scenario_and_model_options(tmp_path):
    what = config_summary(load_runs(option_runs(tmp_path, ("r1", "a", {LC: lc_options(lesions=10)}),
                                                ("r2", "b", {LC: lc_options()}))))
    assert what["scenario options"][f"r1 · {LC}"]["lesions"] == 10  # the original showed one run's for both
    assert what["scenario options"][f"r2 · {LC}"]["lesions"] == 20
    assert what["model options"] == {"r1 · a": {"honour_clicks": "true", "device": "auto"},
                                     "r2 · b": {"honour_clicks": "true", "device": "auto"}}


def test_prompted_table_counts_each_test_sets_lesions_once_whatever_the_models():
    # t1: two cases of 290 and 250 lesions, 20 prompted, the prompted lesions 3 + 1 ml of 10 + 10 ml;
    # t2: all 4 lesions prompted; a lesion-free case and a global scenario are left out; two models, counted once
    les, cases = [], []
    for model in ("a", "b"):
        for name, n, ml in (("c1", 290, (2.0, 1.0)), ("c2", 250, (1.0,))):
            les += [lesion(model, LC, "t1", name, k + 1, 0.5, volume_ml=v) for k, v in enumerate(ml)]
            cases.append(case(model, LC, "t1", name, 0.5, n_lesions=n, n_lesions_prompted=20, gt_volume_ml=10.0))
        les.append(lesion(model, LC, "t2", "c3", 1, 0.5, volume_ml=2.0))
        cases += [case(model, LC, "t2", "c3", 0.5, n_lesions=4, n_lesions_prompted=4, gt_volume_ml=2.0),
                  case(model, LC, "t2", "c4", 1.0, n_lesions=0, n_lesions_prompted=0, gt_volume_ml=0.0),
                  case(model, GC, "t2", "c3", 0.5, n_lesions=4, n_lesions_prompted=4, gt_volume_ml=2.0)]
    table = prompted_table(tables([], les, cases)).set_index("test_set")
    assert list(table.index) == ["t1", "t2"] and set(table["scenario"]) == {LC}
    t1 = table.loc["t1"]
    assert (t1["n_cases"], t1["lesions_per_case"], t1["lesions_min"], t1["lesions_max"]) == (2, 270.0, 250, 290)
    assert t1["prompted_per_case"] == 20.0 and t1["prompted_share"] == pytest.approx(40 / 540)
    assert t1["prompted_volume_share"] == pytest.approx(4.0 / 20.0)
    assert table.loc["t2", "n_cases"] == 1 and table.loc["t2", "prompted_share"] == 1.0
    assert prompted_text(table.reset_index().iloc[0]) == "20 of 270 lesions per case prompted (7%)"
    assert prompted_table(tables()).empty
