"""Hand-made result tables built from the schema's typed rows, for checking aggregation by hand.

Every row is a schema dataclass, so a frame has exactly the table's columns (a missing or unknown
column fails when the row is built). Sessions have one row per interaction up to their budget, as
the engine writes them.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from nfbench.results.aggregate import RunTables
from nfbench.results.schema import (
    RUN_KEYS,
    TABLES,
    THRESHOLDS,
    CaseRow,
    InteractionRow,
    LesionRow,
    RunKeys,
    row_values,
)

NAN = math.nan
_KEY_OPTIONS = ("fold", "seed", "run_id", "policy", "budget", "stop_dice")


def _keys(model: str, scenario: str, test_set: str, case: str, *, fold=None, seed: int = 0, run_id: str = "r1",
          policy: str = "center", budget: int = 3, stop_dice: float = NAN) -> dict:
    keys = RunKeys(run_id=run_id, model=model, scenario=scenario, click_policy=policy, budget=budget,
                   stop_dice=stop_dice, seed=seed, fold=fold, test_set=test_set, case=case)
    return {name: getattr(keys, name) for name in RUN_KEYS}


def session(model: str, scenario: str, test_set: str, case: str, values: list[float], *, lesion_id: int = 1,
            volume_ml: float = 1.0, latency_ms: float = 10.0, nsd: list[float] | None = None,
            lesion_free: bool = False, **keys) -> list[InteractionRow]:
    """Rows of one session: ``values`` are the Dice after each interaction actually made (the lesion
    Dice for ``lesion_id > 0``, else the scan Dice); up to the budget (``budget`` key, default 3)
    the last one is carried forward, flagged, as the engine does. ``nsd`` gives the lesion NSD."""
    k = _keys(model, scenario, test_set, case, **keys)
    if not 1 <= len(values) <= k["budget"]:
        raise ValueError(f"a session has 1..budget values, got {len(values)} for budget {k['budget']}")
    rows = []
    for n in range(1, k["budget"] + 1):
        carried = n > len(values)
        last = min(n, len(values)) - 1
        v = values[last]
        nsd_v = nsd[last] if nsd is not None else NAN
        rows.append(InteractionRow(
            **k, lesion_id=lesion_id, lesion_rank=lesion_id, lesion_volume_ml=volume_ml, interaction=n,
            n_clicks=0 if carried or lesion_free else 1, n_boxes=0,
            dice_lesion=v if lesion_id else NAN, dice_lesion_strict=v if lesion_id else NAN,
            dice_scan=NAN if lesion_id else v, nsd_lesion=nsd_v,
            nsd_cvpr_lesion=NAN if math.isnan(nsd_v) else (0.0 if v <= 0.2 else nsd_v),
            latency_ms=NAN if carried or lesion_free else latency_ms, overhead_ms=NAN if carried else 1.0,
            carried_forward=carried, lesion_free=lesion_free))
    return rows


def lesion_free(model: str, scenario: str, test_set: str, case: str, **keys) -> list[InteractionRow]:
    """The session of a scan without lesions: one scan-level row at Dice 1, padded to the budget."""
    return session(model, scenario, test_set, case, [1.0], lesion_id=0, lesion_free=True, **keys)


def lesion(model: str, scenario: str, test_set: str, case: str, lesion_id: int, dice: float, *,
           volume_ml: float = 1.0, noc: tuple[int, int, int] = (1, 1, 1),
           reached: tuple[bool, bool, bool] = (True, True, True), **metrics) -> LesionRow:
    """One lesion row; ``metrics`` sets any other column (``hd95_lesion_mm=...``) or key (``budget=...``)."""
    keys = {k: metrics.pop(k) for k in _KEY_OPTIONS if k in metrics}
    values = {"lesion_id": lesion_id, "lesion_rank": lesion_id, "lesion_volume_ml": volume_ml, "n_interactions": 1,
              "stopped_early": False, "dice_lesion": dice, "dice_lesion_strict": dice, "nsd_lesion": NAN,
              "nsd_cvpr_lesion": NAN, "hd95_lesion_mm": NAN, "auc_dice": NAN, "auc_dice_norm": NAN,
              "auc_dice_cvpr": NAN, "auc_nsd_cvpr": NAN}
    for x, n, r in zip(THRESHOLDS, noc, reached):
        values[f"noc_{round(x * 100)}"] = n
        values[f"reached_{round(x * 100)}"] = r
    values.update(metrics)
    return LesionRow(**_keys(model, scenario, test_set, case, **keys), **values)


def case(model: str, scenario: str, test_set: str, name: str, dice_scan: float, *, status: str = "ok",
         **metrics) -> CaseRow:
    """One case row; ``metrics`` sets any other column (``n_lesions=0``) or key (``fold=1``)."""
    keys = {k: metrics.pop(k) for k in _KEY_OPTIONS if k in metrics}
    values = {f.name: NAN for f in fields(CaseRow) if f.name not in RUN_KEYS}
    values.update({"n_lesions": 1, "n_lesions_prompted": 1, "n_interactions": 1, "dice_scan": dice_scan,
                   "diagonal_mm": 500.0, "f1_any": 1.0, "f1_iou10": 1.0, "mean_latency_ms": 10.0, "status": status,
                   "error": "" if status == "ok" else "boom"})
    values.update(metrics)
    return CaseRow(**_keys(model, scenario, test_set, name, **keys), **values)


def frame(name: str, rows: list) -> pd.DataFrame:
    """The table ``name`` with exactly the schema's columns, from typed rows."""
    return pd.DataFrame([row_values(r) for r in rows], columns=list(TABLES[name]))


def tables(interactions: list[InteractionRow] = (), lesions: list[LesionRow] = (),
           cases: list[CaseRow] = ()) -> RunTables:
    return RunTables(frame("interactions", list(interactions)), frame("lesions", list(lesions)),
                     frame("cases", list(cases)), frame("clicks", []))


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


def lc_options(**changed) -> dict:
    """config.json's options of lesion-corrective as `nfbench evaluate` records them, with ``changed``."""
    return {"name": "lesion-corrective", "lesions": 20, "interactions": 3, "stop_dice": None, "click_policy": "center",
            "alpha": 8.0, "boxes": False, "box_step": False, "preset": "default", **changed}


def option_runs(folder: Path, *runs: tuple[str, str, dict]) -> list[Path]:
    """Run folders under ``folder``, one per (run id, model, scenario_options): lesion-corrective on the
    same six cases, with a model spec of one option."""
    names = [f"c{n}" for n in range(6)]
    folders = []
    for run_id, model, options in runs:
        rows = [r for n, c in enumerate(names) for r in session(model, "lesion-corrective", "t", c, [0.1 * n, 0.5, 0.9],
                                                                 run_id=run_id)]
        cases = [case(model, "lesion-corrective", "t", c, 0.5, run_id=run_id) for c in names]
        spec = {"name": model, "weights": None, "weights_identity": None, "options": {"honour_clicks": "true"},
                "device": "auto"}
        folders.append(write_run(folder / run_id, tables(rows, [], cases), run_id=run_id, scenario_options=options,
                                 model_specs=[spec], models=[model]))
    return folders
