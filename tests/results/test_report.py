from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.results.aggregate import load_runs, main_table, per_case_at, size_table, summary_table
from nfbench.results.report import markdown_table, write_report
from tests.results._runs import make_run


@pytest.fixture(scope="module")
def run(tiny_dataset, tmp_path_factory):
    return make_run(tiny_dataset, tmp_path_factory.mktemp("runs") / "run")


def test_after_n_interactions_reads_the_row_with_that_number(run):
    tables = load_runs([run])
    inter = tables.interactions
    lesion = inter[inter["lesion_id"] > 0]
    # The oracle stops at Dice 1.0 after one click; the rows after it are carried forward and count.
    at3 = per_case_at(lesion, "dice_lesion", 3)
    expected = lesion[lesion["interaction"] == 3].groupby(["model", "scenario", "test_set", "fold", "case"], dropna=False)["dice_lesion"].mean()
    assert sorted(at3["dice_lesion"]) == sorted(expected)
    assert (lesion["carried_forward"] & (lesion["interaction"] > 1)).any()
    summary = summary_table(tables).set_index(["model", "scenario", "test_set"])
    assert summary.loc[("oracle", "lesion-corrective", "imagesTs_1"), "lesion Dice @3"] == 1.0
    assert summary.loc[("half", "lesion-corrective", "imagesTs_1"), "lesion Dice @1"] < 1.0


def test_main_and_size_tables(run):
    tables = load_runs([run])
    main = main_table(tables).set_index(["model", "scenario", "test_set"])
    assert main.loc[("oracle", "lesion-corrective", "imagesTs_2"), "dice_lesion_at_3_mean"] == 1.0
    assert main["n_failed"].eq(0).all()
    sizes = size_table(tables.lesions)
    assert set(sizes["size_bin"].astype(str)) <= {"< 1 ml", "1–10 ml", "> 10 ml"}
    assert sizes.groupby(["model", "scenario", "test_set"])["n_lesions"].sum().max() <= 5


def test_report_writes_every_artefact(run, tmp_path):
    html = write_report([run], tmp_path / "report")
    text = html.read_text()
    assert "<img" in text and "data:image/png;base64," in text and "http" not in text.split("<body>")[1].split("nfbench report")[0]
    for name in ("dice_lesion_curves", "dice_scan_curves", "dice_by_lesion_size", "noc", "detection_f1", "latency",
                 "overlay_oracle_lesion-corrective"):
        assert (tmp_path / "report" / "figures" / f"{name}.png").exists()
        assert (tmp_path / "report" / "figures" / f"{name}.svg").exists()
    sheets = pd.read_excel(tmp_path / "report" / "tables.xlsx", sheet_name=None)
    assert {"summary", "main", "comparisons", "lesion_size"} <= set(sheets)
    assert "| model |" in (tmp_path / "report" / "tables.md").read_text()


def test_report_command_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "not a run folder" in result.output and "nfbench evaluate" in result.output


def test_markdown_table():
    text = markdown_table(pd.DataFrame({"a": [1.23456, float("nan")], "b": ["x|y", "z"]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.235 | x\\|y |", "|  | z |"]
