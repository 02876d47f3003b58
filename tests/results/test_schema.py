"""Result tables written before a column was added (schema.ADDED_COLUMNS) still load and report."""

from __future__ import annotations

import pandas as pd

from nfbench.results.aggregate import RunTables, main_table
from nfbench.results.schema import ADDED_COLUMNS, CASES, with_added_columns
from nfbench.results.store import RunStore, read_run_table
from tests.results._frames import case, frame, tables

_NEW = list(ADDED_COLUMNS["cases"])


def _old_cases() -> pd.DataFrame:
    """A cases table as an nfbench without the voxel-wise error volumes wrote it."""
    rows = [case("a", "global-corrective", "t", "c1", 0.9, fp_voxel_volume_ml=0.5, fn_voxel_volume_ml=0.25)]
    return frame("cases", rows).drop(columns=_NEW)


def test_an_old_cases_table_gets_the_added_columns_empty_in_schema_order():
    old = _old_cases()
    new = with_added_columns("cases", old)
    assert list(new.columns) == list(CASES)
    assert new[_NEW].isna().all().all()
    assert list(old.columns) == [c for c in CASES if c not in _NEW]  # the input is not modified
    current = frame("cases", [case("a", "global-corrective", "t", "c1", 0.9)])
    assert with_added_columns("cases", current) is current


def test_a_missing_column_that_is_not_an_added_one_stays_missing():
    damaged = _old_cases().drop(columns=["dice_scan"])
    assert "dice_scan" not in with_added_columns("cases", damaged).columns


def test_the_main_table_reports_the_added_columns_and_leaves_them_empty_for_an_old_run():
    current = tables(cases=[case("a", "global-corrective", "t", "c1", 0.9, fp_voxel_volume_ml=0.5,
                                 fn_voxel_volume_ml=0.25)])
    assert main_table(current)[_NEW].values.tolist() == [[0.5, 0.25]]
    old = RunTables(current.interactions, current.lesions, with_added_columns("cases", _old_cases()), current.clicks)
    table = main_table(old)
    assert table["dice_scan_final_mean"].tolist() == [0.9]
    assert table[_NEW].isna().all().all()


def test_a_resumed_old_run_mixing_both_schemas_consolidates_into_the_schema(tmp_path):
    store = RunStore(tmp_path / "run", {"run_id": "r1"})
    store.write_case("a", {"cases": [case("m", "global-corrective", "t", "a", 0.9, fp_voxel_volume_ml=0.5)]})
    store.write_case("b", {"cases": [case("m", "global-corrective", "t", "b", 0.8, fp_voxel_volume_ml=0.25)]})
    part = store.parts / "a" / "cases.parquet"  # case "a" finished before the columns existed
    pd.read_parquet(part).drop(columns=_NEW).to_parquet(part, index=False)
    cases = RunStore(tmp_path / "run", {"run_id": "r1"}, resume=True).consolidate()["cases"]
    assert list(cases.columns) == list(CASES)  # written to cases.parquet in the schema's order
    assert list(pd.read_parquet(tmp_path / "run" / "cases.parquet").columns) == list(CASES)
    assert cases["case"].tolist() == ["a", "b"]
    assert cases["fp_voxel_volume_ml"].isna().tolist() == [True, False]
    assert cases["fp_voxel_volume_ml"].iloc[1] == 0.25


def test_an_old_run_folder_reads_and_loads_with_the_added_columns_empty(tmp_path):
    store = RunStore(tmp_path / "run", {"run_id": "r1"})
    store.write_case("a", {"cases": [case("m", "global-corrective", "t", "a", 0.9, fp_voxel_volume_ml=0.5)]})
    store.consolidate()
    path = tmp_path / "run" / "cases.parquet"  # as an nfbench before the columns wrote it
    pd.read_parquet(path).drop(columns=_NEW).to_parquet(path, index=False)
    cases = read_run_table(tmp_path / "run", "cases")
    assert list(cases.columns) == list(CASES) and cases[_NEW].isna().all().all()
