from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nfbench.results.stats import bootstrap_ci, holm, paired_comparisons, rank_biserial, smallest_holm_p, smallest_p


def test_holm_on_a_hand_made_list():
    # sorted p: 0.01 (×4), 0.02 (×3 → 0.06), 0.03 (×2 → 0.06), 0.04 (×1); monotone, capped at 1
    np.testing.assert_allclose(holm([0.03, 0.01, 0.04, 0.02]), [0.06, 0.04, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.4]), [0.8, 0.8])
    adjusted = holm([0.9, np.nan, 0.6])
    assert np.isnan(adjusted[1]) and adjusted[0] == 1.0 and adjusted[2] == 1.0


def test_bootstrap_ci_of_a_constant_is_the_constant():
    assert bootstrap_ci(np.full(7, 0.8)) == pytest.approx((0.8, 0.8))
    lo, hi = bootstrap_ci(np.array([0.0, 1.0] * 20), seed=3)
    assert 0.3 < lo < 0.5 < hi < 0.7
    assert bootstrap_ci(np.array([0.0, 1.0] * 20), seed=3) == (lo, hi)  # seeded
    assert np.isnan(bootstrap_ci(np.array([np.nan]))[0])


def test_rank_biserial_on_hand_made_differences():
    assert rank_biserial(np.array([0.1, 0.2, 0.3])) == 1.0
    assert rank_biserial(np.array([-0.1, -0.2])) == -1.0
    # |d| ranks: 0.1 → 1, 0.2 → 2, 0.3 → 3; R+ = 1 + 3 = 4, R− = 2 → (4 − 2) / 6
    assert rank_biserial(np.array([0.1, -0.2, 0.3, 0.0])) == pytest.approx(1 / 3)


def test_paired_comparisons_pair_cases_and_correct_for_multiplicity():
    rng = np.random.default_rng(0)
    rows = []
    for case in range(12):
        base = rng.uniform(0.3, 0.6)
        for model, shift in (("a", 0.3), ("b", 0.0), ("c", 0.01)):
            rows.append({"model": model, "scenario": "s", "test_set": "t", "case": f"c{case}", "dice": base + shift + rng.normal(0, 0.005)})
    rows = [r for r in rows if not (r["model"] == "c" and r["case"] == "c0")]  # c did not finish one case
    table = paired_comparisons(pd.DataFrame(rows), value="dice", by=["scenario", "test_set"], shared_cases=True).set_index(["model_a", "model_b"])
    assert table.loc[("a", "b"), "n_cases"] == 12 and table.loc[("a", "c"), "n_cases"] == 11
    assert table.loc[("a", "b"), "rank_biserial"] == 1.0 and table.loc[("a", "b"), "p_value"] < 0.001
    np.testing.assert_allclose(table["p_holm"], holm(table["p_value"].to_numpy()))
    assert (table["p_holm"] >= table["p_value"]).all()


def test_models_whose_case_sets_differ_are_not_compared_unless_asked():
    rows = [{"model": m, "scenario": "s", "test_set": "t", "case": f"c{n}", "dice": 0.5 + 0.1 * (m == "a") + 0.01 * n}
            for n in range(8) for m in ("a", "b") if not (m == "b" and n == 0)]  # b has no value on c0
    table = paired_comparisons(pd.DataFrame(rows), value="dice", by=["scenario", "test_set"])
    row = table.iloc[0]
    assert row["pairing"].startswith("not compared: the case sets differ (a: 8, b: 7, shared: 7)")
    assert np.isnan(row["p_value"]) and np.isnan(row["mean_difference"]) and row["n_cases"] == 0
    shared = paired_comparisons(pd.DataFrame(rows), value="dice", by=["scenario", "test_set"], shared_cases=True).iloc[0]
    assert shared["pairing"] == "shared cases only (a: 8, b: 7, shared: 7)"
    assert shared["n_cases"] == 7 and shared["mean_difference"] == pytest.approx(0.1)
    same = paired_comparisons(pd.DataFrame([r for r in rows if r["case"] != "c0"]), value="dice", by=["scenario", "test_set"])
    assert same["pairing"].iloc[0] == "same cases" and same["n_cases"].iloc[0] == 7


def test_wilcoxon_p_value_of_a_one_sided_sweep_is_the_exact_answer():
    # six cases, model a better on every one with distinct differences: under H0 each of the 2^6 sign
    # patterns is equally likely and only "all +" and "all −" are as extreme → p = 2 / 64.
    rows = [{"model": m, "scenario": "s", "test_set": "t", "case": f"c{n}", "dice": 0.5 + (0.01 * (n + 1) if m == "a" else 0)}
            for n in range(6) for m in ("a", "b")]
    table = paired_comparisons(pd.DataFrame(rows), value="dice", by=["scenario", "test_set"])
    assert table["p_value"].iloc[0] == pytest.approx(2 / 64)
    assert table["rank_biserial"].iloc[0] == 1.0 and table["n_cases"].iloc[0] == 6


def test_smallest_attainable_p_values_with_and_without_holm():
    assert smallest_p(6) == pytest.approx(2 / 2**6) and smallest_p(5) == pytest.approx(2 / 2**5)
    assert np.isnan(smallest_p(0))
    # Holm multiplies the smallest p of the family by its size: 6 cases reach 0.031 alone, 0.0625 in pairs
    assert smallest_holm_p([6]) == pytest.approx(0.03125)
    assert smallest_holm_p([6, 6]) == pytest.approx(0.0625)
    assert smallest_holm_p([6] * 6) == pytest.approx(0.1875)
    assert smallest_holm_p([8] * 6) == pytest.approx(6 * 2 / 2**8)  # < 0.05: 8 cases can carry six rows
    assert smallest_holm_p([3, 10]) == pytest.approx(2 * 2 / 2**10)  # the best row sets the family's floor
    assert np.isnan(smallest_holm_p([]))


def test_bootstrap_ci_covers_the_mean_near_its_level_with_few_cases():
    rng = np.random.default_rng(11)
    for n in (6, 10):
        samples = rng.normal(0.8, 0.1, size=(300, n))
        covered = [lo <= 0.8 <= hi for lo, hi in (bootstrap_ci(s, seed=i) for i, s in enumerate(samples))]
        assert np.mean(covered) >= 0.9, n  # the plain percentile interval: 0.88 either way
