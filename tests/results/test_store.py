from __future__ import annotations

import pytest

import math
from dataclasses import replace

from nfbench.results.schema import CASES, TABLES, CaseRow, RunKeys
from nfbench.results.store import RunError, RunStore, case_key, read_run_table


def _case_row(case: str, status: str = "ok") -> CaseRow:
    keys = RunKeys(run_id="r", model="m", scenario="s", click_policy="center", budget=3, stop_dice=math.nan, seed=1,
                   fold=None, test_set="imagesTs", case=case)
    return replace(CaseRow.failed(keys, "boom"), status=status, error="" if status == "ok" else "boom")


def test_parts_are_atomic_and_failed_cases_are_retried(tmp_path):
    store = RunStore(tmp_path / "r", {"run_id": "r", "seed": 1})
    store.write_case("a", {"cases": [_case_row("a")]})
    store.write_case("b", {"cases": [_case_row("b", "failed")]})
    (store.parts / ".tmp-c").mkdir()  # what a kill during a write leaves behind
    assert store.finished() == {"a"}

    reopened = RunStore(tmp_path / "r", {"run_id": "r", "seed": 1}, resume=True)
    assert not (reopened.parts / ".tmp-c").exists()
    reopened.write_case("b", {"cases": [_case_row("b")]})
    assert reopened.finished() == {"a", "b"}
    tables = reopened.consolidate()
    assert list(tables["cases"]["case"]) == ["a", "b"]
    assert list(tables["cases"].columns) == list(CASES)
    for name in TABLES:
        assert len(read_run_table(tmp_path / "r", name)) == (2 if name == "cases" else 0)


def test_run_errors_name_the_folder_and_the_fix(tmp_path):
    RunStore(tmp_path / "r", {"run_id": "r", "seed": 1})
    with pytest.raises(RunError, match=r"already exists; resume it \(--resume\) or choose another"):
        RunStore(tmp_path / "r", {"run_id": "r", "seed": 1})
    with pytest.raises(RunError, match="differs in seed"):
        RunStore(tmp_path / "r", {"run_id": "r", "seed": 2}, resume=True)
    with pytest.raises(RunError, match="not a run folder.*nfbench evaluate"):
        read_run_table(tmp_path, "cases")
    with pytest.raises(RunError, match="did not finish"):
        read_run_table(tmp_path / "r", "cases")
    (tmp_path / "file").write_text("")
    with pytest.raises(RunError, match="file: exists and is not a folder"):
        RunStore(tmp_path / "file", {"run_id": "f"})
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("")
    with pytest.raises(RunError, match="thesis: folder holds other files and no nfbench run"):
        RunStore(tmp_path / "thesis", {"run_id": "t"})


def test_case_key_is_file_name_safe():
    assert case_key("m/x", "lesion-corrective", "imagesTs_1", "1_2018_P_3_T2") == "m_x__lesion-corrective__imagesTs_1__1_2018_P_3_T2"


def test_tables_take_only_their_own_rows(tmp_path):
    store = RunStore(tmp_path / "r", {"run_id": "r", "seed": 1})
    with pytest.raises(TypeError, match="table 'cases' takes CaseRow rows, got dict"):
        store.write_case("a", {"cases": [{"run_id": "r", "case": "a"}]})
    with pytest.raises(ValueError, match=r"unknown result tables \[.case.\]"):
        store.write_case("a", {"case": [_case_row("a")]})
