"""Aggregation of run tables into the numbers a paper reports (DESIGN §4).

Rules, each fixing a mistake of the original analysis:
- a case counts once: lesion metrics are averaged over the case's lesions first, then over cases;
- the spread is the between-case standard deviation (never an average of standard deviations),
  with a seeded percentile-bootstrap 95% interval of the mean; the spread over folds is separate;
- "after N interactions" is the row whose ``interaction`` equals N (1-based);
- sessions that stopped early keep their last value (``carried_forward`` rows), so no case drops out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nfbench.results.schema import THRESHOLDS
from nfbench.results.stats import bootstrap_ci
from nfbench.results.store import load_config, read_run_table

__all__ = [
    "RunTables", "load_runs", "describe", "per_case_at", "curves", "main_table", "size_table",
    "fold_table", "summary_table", "config_summary", "budgets", "GROUP", "SIZE_BINS",
]

GROUP = ["model", "scenario", "test_set"]
SIZE_BINS = ((0.0, 1.0, "< 1 ml"), (1.0, 10.0, "1–10 ml"), (10.0, math.inf, "> 10 ml"))


@dataclass
class RunTables:
    """The tables of one or more runs, concatenated, and what the report needs besides."""

    interactions: pd.DataFrame
    lesions: pd.DataFrame
    cases: pd.DataFrame
    clicks: pd.DataFrame
    configs: list[dict] = field(default_factory=list)
    previews: dict[str, Path] = field(default_factory=dict)

    @property
    def ok_cases(self) -> pd.DataFrame:
        return self.cases[self.cases["status"] == "ok"]


def load_runs(runs: list[str | Path]) -> RunTables:
    """Read and concatenate the tables of run folders (they may hold different models or scenarios)."""
    if not runs:
        raise ValueError("no run folder given")
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in ("interactions", "lesions", "cases", "clicks")}
    configs, previews = [], {}
    for run in map(Path, runs):
        configs.append(load_config(run))
        for name in parts:
            frame = read_run_table(run, name)
            if len(frame):
                parts[name].append(frame)
        previews.update({p.stem: p for p in sorted((run / "previews").glob("*.npz"))})
    tables = {name: pd.concat(frames, ignore_index=True) if frames else read_run_table(Path(runs[0]), name)
              for name, frames in parts.items()}
    return RunTables(**tables, configs=configs, previews=previews)


def describe(values: pd.Series | np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Mean, between-case std (ddof 1), bootstrap 95% CI of the mean and n, NaNs dropped."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    lo, hi = bootstrap_ci(v, seed=seed)
    return {"mean": float(v.mean()) if v.size else math.nan,
            "std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
            "ci_low": lo, "ci_high": hi, "n": int(v.size)}


def budgets(interactions: pd.DataFrame) -> dict[str, int]:
    """Interactions per session of each scenario, as recorded (rows are carried to the budget)."""
    return {s: int(f["interaction"].max()) for s, f in interactions.groupby("scenario")}


def per_case_at(interactions: pd.DataFrame, value: str, interaction: int | None = None) -> pd.DataFrame:
    """One row per model × scenario × test set × fold × case: ``value`` at ``interaction`` (default: last),
    averaged over the case's lesions."""
    frame = interactions
    if interaction is None:
        frame = frame[frame["interaction"] == frame.groupby("scenario")["interaction"].transform("max")]
    else:
        last = frame.groupby("scenario")["interaction"].transform("max")
        frame = frame[frame["interaction"] == np.minimum(interaction, last)]
    keys = GROUP + ["fold", "case"]
    return frame.groupby(keys, dropna=False)[value].mean().reset_index()


def _summarise(per_case: pd.DataFrame, value: str, prefix: str, by: list[str] = GROUP) -> pd.DataFrame:
    rows = []
    for key, frame in per_case.groupby(by, dropna=False):
        stats = describe(frame[value])
        rows.append({**dict(zip(by, key)), **{f"{prefix}_{k}" if k != "n" else "n_cases": v for k, v in stats.items()}})
    return pd.DataFrame(rows, columns=[*by, "n_cases", *(f"{prefix}_{k}" for k in ("mean", "std", "ci_low", "ci_high"))])


def curves(interactions: pd.DataFrame, *, level: str) -> pd.DataFrame:
    """Dice per interaction: ``level="lesion"`` (lesion scenarios, ``dice_lesion``) or ``"scan"``
    (global scenarios, ``dice_scan``); per case first, then mean, std and CI over cases."""
    per_lesion = interactions["lesion_id"] > 0
    frame = interactions[per_lesion] if level == "lesion" else interactions[~per_lesion]
    value = "dice_lesion" if level == "lesion" else "dice_scan"
    if frame.empty:
        return pd.DataFrame(columns=[*GROUP, "interaction", "n_cases", "mean", "std", "ci_low", "ci_high"])
    per_case = frame.groupby([*GROUP, "fold", "case", "interaction"], dropna=False)[value].mean().reset_index()
    rows = []
    for key, f in per_case.groupby([*GROUP, "interaction"]):
        d = describe(f[value])
        rows.append({**dict(zip([*GROUP, "interaction"], key)), "n_cases": d.pop("n"), **d})
    return pd.DataFrame(rows)


def main_table(tables: RunTables, *, budget: int | None = None) -> pd.DataFrame:
    """One row per model × scenario × test set with the headline numbers (mean over cases)."""
    inter, cases = tables.interactions, tables.ok_cases
    out = cases.groupby(GROUP).size().rename("n_cases").reset_index()
    failed = tables.cases[tables.cases["status"] != "ok"].groupby(GROUP).size().rename("n_failed")
    out = out.merge(failed.reset_index(), how="left", on=GROUP).fillna({"n_failed": 0}).astype({"n_failed": int})
    lesion_rows = inter[inter["lesion_id"] > 0]
    scan_rows = inter[inter["lesion_id"] == 0]
    pieces = []
    if len(lesion_rows):
        last = max(budgets(lesion_rows).values())
        at = min(budget or last, last)
        for n, label in ((1, "dice_lesion_at_1"), (at, f"dice_lesion_at_{at}")):
            pieces.append(_summarise(per_case_at(lesion_rows, "dice_lesion", n), "dice_lesion", label))
    if len(scan_rows):
        pieces.append(_summarise(per_case_at(scan_rows, "dice_scan"), "dice_scan", "dice_scan_at_stop"))
    les = tables.lesions
    if len(les):
        agg = {"nsd_lesion": "mean", "auc_dice_norm": "mean", **{f"noc_{round(x * 100)}": "mean" for x in THRESHOLDS}}
        per_case = les.groupby([*GROUP, "case"]).agg(agg).reset_index()
        summary = per_case.groupby(GROUP)[list(agg)].mean().add_suffix("_mean").reset_index()
        nof = les.groupby(GROUP)[[f"reached_{round(x * 100)}" for x in THRESHOLDS]].agg(lambda r: int((~r.astype(bool)).sum()))
        nof.columns = [c.replace("reached", "nof") for c in nof.columns]
        pieces += [summary, nof.reset_index()]
    case_columns = ["dice_scan", "nsd_scan", "hd95_scan_mm", "f1_any", "f1_iou10", "fp_volume_ml", "fn_volume_ml",
                    "mean_latency_ms", "wall_time_s", "peak_memory_mb"]
    finite = cases[GROUP + case_columns].replace([np.inf, -np.inf], np.nan)
    pieces.append(finite.groupby(GROUP)[case_columns].mean().add_prefix("final_").reset_index())
    for piece in pieces:
        out = out.merge(piece.drop(columns=["n_cases"], errors="ignore"), how="left", on=GROUP)
    return out


def size_table(lesions: pd.DataFrame) -> pd.DataFrame:
    """Final lesion Dice by lesion volume (< 1, 1–10, > 10 ml): per case mean within the bin, then over cases."""
    if lesions.empty:
        return pd.DataFrame(columns=[*GROUP, "size_bin", "n_lesions", "n_cases", "mean", "std", "ci_low", "ci_high"])
    frame = lesions.assign(size_bin=pd.cut(lesions["lesion_volume_ml"], [b[0] for b in SIZE_BINS] + [math.inf],
                                           labels=[b[2] for b in SIZE_BINS], right=False))
    rows = []
    for key, f in frame.groupby([*GROUP, "size_bin"], observed=True):
        per_case = f.groupby("case")["dice_lesion"].mean()
        d = describe(per_case)
        rows.append({**dict(zip([*GROUP, "size_bin"], key)), "n_lesions": len(f), "n_cases": d.pop("n"), **d})
    return pd.DataFrame(rows)


def fold_table(tables: RunTables) -> pd.DataFrame:
    """Mean final scan Dice per fold, then mean ± std over folds (empty when there is one fold)."""
    cases = tables.ok_cases
    if cases["fold"].nunique(dropna=True) < 2:
        return pd.DataFrame(columns=[*GROUP, "n_folds", "fold_mean", "fold_std"])
    per_fold = cases.groupby([*GROUP, "fold"])["dice_scan"].mean().reset_index()
    out = per_fold.groupby(GROUP)["dice_scan"].agg(n_folds="count", fold_mean="mean", fold_std="std")
    return out.reset_index()


def summary_table(tables: RunTables) -> pd.DataFrame:
    """The demo's table: lesion Dice after 1 and 3 interactions, scan Dice at stop, latency."""
    inter = tables.interactions
    lesion_rows, scan_rows = inter[inter["lesion_id"] > 0], inter[inter["lesion_id"] == 0]
    out = tables.ok_cases.groupby(GROUP).agg(cases=("case", "count"), latency_ms=("mean_latency_ms", "mean")).reset_index()
    columns = {}
    if len(lesion_rows):
        for n in (1, 3):
            columns[f"lesion Dice @{n}"] = per_case_at(lesion_rows, "dice_lesion", n).groupby(GROUP)["dice_lesion"].mean()
    if len(scan_rows):
        columns["scan Dice at stop"] = per_case_at(scan_rows, "dice_scan").groupby(GROUP)["dice_scan"].mean()
        used = scan_rows[~scan_rows["carried_forward"]].groupby([*GROUP, "case"])["interaction"].max()
        columns["interactions used"] = used.groupby(GROUP).mean()
    for name, series in columns.items():
        out = out.merge(series.rename(name).reset_index(), how="left", on=GROUP)
    ordered = [c for c in [*GROUP, "cases", *columns, "latency_ms"] if c in out.columns]
    return out[ordered].rename(columns={"latency_ms": "latency ms"})


def config_summary(tables: RunTables) -> dict[str, object]:
    """What was run, for the report's header."""
    configs = tables.configs
    return {
        "runs": [c.get("run_id") for c in configs],
        "created": [c.get("created") for c in configs],
        "models": sorted({m for c in configs for m in c.get("models", [])}),
        "scenarios": sorted({s for c in configs for s in c.get("scenarios", [])}),
        "click policies": sorted({c.get("click_policy", "") for c in configs}),
        "seeds": sorted({c.get("seed") for c in configs}, key=str),
        "test sets": sorted({t for c in configs for t in c.get("test_sets", [])}),
        "scenario options": {s: o for c in configs for s, o in c.get("scenario_options", {}).items()},
        "versions": configs[0].get("versions", {}) if configs else {},
        "data": sorted({c.get("data", "") for c in configs}),
    }

