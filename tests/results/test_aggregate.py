"""Aggregation on hand-made tables whose answers can be worked out on paper."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nfbench.results.aggregate import (
    RunTables,
    complete_sessions,
    curves,
    fold_table,
    load_runs,
    main_table,
    noc_table,
    per_case_at,
    size_table,
    summary_table,
)
from nfbench.results.store import RunError
from tests.results._frames import case, lesion, session, tables, write_run

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


def test_shorter_sessions_are_carried_forward_to_the_scenarios_last_interaction():
    # global-single: one click per lesion, so a scan with two lesions has two rows and one with four has four.
    inter = tables(interactions=session("m", "global-single", "t", "c1", [0.4, 0.6], lesion_id=0)
                   + session("m", "global-single", "t", "c2", [0.1, 0.2, 0.3, 0.4], lesion_id=0)).interactions
    completed = complete_sessions(inter)
    c1 = completed[completed["case"] == "c1"].sort_values("interaction")
    assert c1["interaction"].tolist() == [1, 2, 3, 4]
    assert c1["dice_scan"].tolist() == [0.4, 0.6, 0.6, 0.6]
    assert c1["carried_forward"].tolist() == [False, False, True, True]
    assert c1["latency_ms"].iloc[2:].isna().all()
    curve = curves(inter, level="scan")
    np.testing.assert_allclose(curve["mean"], [0.25, 0.4, 0.45, 0.5])
    assert curve["n_cases"].tolist() == [2, 2, 2, 2]
    assert len(complete_sessions(completed)) == len(completed)  # nothing left to add


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


def test_summary_table_reads_after_1_and_3_and_the_stop():
    rows = session("a", LC, "t", "c1", [0.5, 0.7, 0.8], latency_ms=20.0)
    rows += session("a", LC, "t", "c2", [0.9], budget=3, latency_ms=40.0)  # stopped early
    rows += session("a", "lesion-single", "t", "c1", [0.4])
    rows += session("a", GC, "t", "c1", [0.3, 0.85], lesion_id=0, budget=5)
    cases = [case("a", s, "t", c, 0.5) for s, c in ((LC, "c1"), (LC, "c2"), ("lesion-single", "c1"), (GC, "c1"))]
    summary = summary_table(tables(rows, [], cases)).set_index("scenario")
    assert summary.loc[LC, "lesion Dice @1"] == pytest.approx(0.7)   # (0.5 + 0.9) / 2
    assert summary.loc[LC, "lesion Dice @3"] == pytest.approx(0.85)  # (0.8 + 0.9) / 2, c2 carried
    assert summary.loc[LC, "latency ms"] == pytest.approx(30.0)      # carried rows have no latency
    assert summary.loc["lesion-single", "lesion Dice @1"] == 0.4
    assert math.isnan(summary.loc["lesion-single", "lesion Dice @3"])  # one interaction only: undefined
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
