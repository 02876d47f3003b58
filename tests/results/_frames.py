"""Hand-made result tables with the schema's columns, for checking aggregation by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from nfbench.results.aggregate import RunTables
from nfbench.results.schema import CASES, CLICKS, INTERACTIONS, LESIONS, THRESHOLDS

NAN = math.nan


def _keys(model: str, scenario: str, test_set: str, case: str, *, fold=None, seed: int = 0,
          run_id: str = "r1", policy: str = "center") -> dict:
    return {"run_id": run_id, "model": model, "scenario": scenario, "click_policy": policy, "seed": seed,
            "fold": fold, "test_set": test_set, "case": case}


def session(model: str, scenario: str, test_set: str, case: str, values: list[float], *, lesion_id: int = 1,
            budget: int | None = None, volume_ml: float = 1.0, latency_ms: float = 10.0, **keys) -> list[dict]:
    """Rows of one session: ``values`` are the Dice after each interaction actually made; with
    ``budget`` longer than that, the last value is carried forward as the engine does."""
    rows = []
    budget = budget or len(values)
    for n in range(1, budget + 1):
        carried = n > len(values)
        v = values[min(n, len(values)) - 1]
        rows.append({**_keys(model, scenario, test_set, case, **keys), "lesion_id": lesion_id,
                     "lesion_rank": lesion_id, "lesion_volume_ml": volume_ml, "interaction": n,
                     "n_clicks": 0 if carried else 1, "n_boxes": 0,
                     "dice_lesion": v if lesion_id else NAN, "dice_lesion_strict": v if lesion_id else NAN,
                     "dice_scan": NAN if lesion_id else v, "nsd_lesion": NAN,
                     "latency_ms": NAN if carried else latency_ms, "overhead_ms": NAN if carried else 1.0,
                     "carried_forward": carried})
    return rows


def lesion(model: str, scenario: str, test_set: str, case: str, lesion_id: int, dice: float, *,
           volume_ml: float = 1.0, noc: tuple[int, int, int] = (1, 1, 1),
           reached: tuple[bool, bool, bool] = (True, True, True), **keys) -> dict:
    row = {**_keys(model, scenario, test_set, case, **keys), "lesion_id": lesion_id, "lesion_rank": lesion_id,
           "lesion_volume_ml": volume_ml, "n_interactions": 1, "stopped_early": False, "dice_lesion": dice,
           "dice_lesion_strict": dice, "nsd_lesion": NAN, "hd95_lesion_mm": NAN, "auc_dice": NAN, "auc_dice_norm": NAN}
    for x, n, r in zip(THRESHOLDS, noc, reached):
        row[f"noc_{round(x * 100)}"] = n
        row[f"reached_{round(x * 100)}"] = r
    return row


def case(model: str, scenario: str, test_set: str, name: str, dice_scan: float, *, status: str = "ok", **extra) -> dict:
    keys = {k: extra.pop(k) for k in ("fold", "seed", "run_id", "policy") if k in extra}
    row = {c: NAN for c in CASES}
    row.update(_keys(model, scenario, test_set, name, **keys))
    row.update({"n_lesions": 1, "n_lesions_prompted": 1, "n_interactions": 1, "dice_scan": dice_scan,
                "f1_any": 1.0, "f1_iou10": 1.0, "mean_latency_ms": 10.0, "status": status,
                "error": "" if status == "ok" else "boom"})
    row.update(extra)
    return row


def frame(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=list(columns))


def tables(interactions: list[dict] = (), lesions: list[dict] = (), cases: list[dict] = ()) -> RunTables:
    return RunTables(frame(list(interactions), INTERACTIONS), frame(list(lesions), LESIONS),
                     frame(list(cases), CASES), frame([], CLICKS))


def write_run(folder: Path, run: RunTables, *, run_id: str = "r1", previews: dict[str, dict] | None = None,
              **config) -> Path:
    """A run folder as the store writes it (config.json, the four tables, previews)."""
    folder.mkdir(parents=True)
    config = {"run_id": run_id, "created": "2026-01-01T00:00:00+00:00", "models": [], "scenarios": [],
              "test_sets": [], "seed": 0, "fold": None, "click_policy": "center", "versions": {"nfbench": "0"},
              **config}
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("interactions", "lesions", "cases", "clicks"):
        getattr(run, name).to_parquet(folder / f"{name}.parquet", index=False)
    if previews:
        (folder / "previews").mkdir()
        for key, arrays in previews.items():
            np.savez_compressed(folder / "previews" / f"{key}.npz", **arrays)
    return folder
