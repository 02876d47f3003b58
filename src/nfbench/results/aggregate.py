"""Aggregation of run tables into the numbers a paper reports (DESIGN §4).

Rules, each fixing a mistake of the original analysis (reference/seed_spec.md §4.2):

- **A case counts once.** Lesion metrics are averaged over the case's lesions first; a case
  evaluated under several folds or seeds is then averaged over those, so a test case is one
  statistical unit however many models of a cross-validation saw it. Only then are cases averaged.
- **The spread is between cases**: the standard deviation (ddof 1) of the per-case values, never
  an average of per-case standard deviations, with a seeded percentile-bootstrap 95% interval of
  the mean (:func:`nfbench.results.stats.bootstrap_ci`, 2000 resamples). The spread over folds
  is a separate table (:func:`fold_table`): the mean of each fold, then mean ± std over folds.
- **"After N interactions" is the row whose ``interaction`` equals N** (1-based), never a
  positional row.
- **No case drops out of a curve.** A session that ended before the scenario's last interaction
  (an early stop, or a ``global-single`` scan with fewer lesions than the budget) keeps its last
  value: the engine writes ``carried_forward`` rows up to the budget, and :func:`complete_sessions`
  carries forward whatever is still missing, so every case is in every point of a curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nfbench.results.schema import THRESHOLDS
from nfbench.results.stats import N_RESAMPLES, bootstrap_ci
from nfbench.results.store import RunError, case_key, load_config, read_run_table

__all__ = [
    "DEFAULT_BUDGET",
    "GROUP",
    "SESSION",
    "SIZE_BINS",
    "RunTables",
    "complete_sessions",
    "config_summary",
    "curves",
    "describe",
    "fold_table",
    "load_runs",
    "main_table",
    "noc_table",
    "per_case",
    "per_case_at",
    "size_table",
    "summary_table",
]

GROUP = ["model", "scenario", "test_set"]
"""One row of every summary table: a model on a scenario and a test set."""

SESSION = ["run_id", "model", "scenario", "click_policy", "seed", "fold", "test_set", "case", "lesion_id"]
"""One session: a lesion (lesion scenarios) or a scan (global scenarios, ``lesion_id`` 0)."""

SIZE_BINS = ((0.0, 1.0, "< 1 ml"), (1.0, 10.0, "1–10 ml"), (10.0, math.inf, "> 10 ml"))
"""Lesion-volume strata: [0, 1), [1, 10) and [10, ∞) ml."""

DEFAULT_BUDGET = 3
"""Interaction at which lesion scenarios are summarised unless told otherwise (the paper's 3)."""

_TABLE_NAMES = ("interactions", "lesions", "cases", "clicks")


@dataclass(frozen=True)
class RunTables:
    """The tables of one or more runs, concatenated, and what a report needs besides.

    ``previews`` maps (model, scenario, test_set, case) to the ``.npz`` overlay file of that case.
    """

    interactions: pd.DataFrame
    lesions: pd.DataFrame
    cases: pd.DataFrame
    clicks: pd.DataFrame
    configs: list[dict] = field(default_factory=list)
    previews: dict[tuple[str, str, str, str], Path] = field(default_factory=dict)

    @property
    def ok_cases(self) -> pd.DataFrame:
        """Cases that finished (failed cases have a row with ``status == "failed"`` and nothing else)."""
        return self.cases[self.cases["status"] == "ok"]


def load_runs(runs: list[str | Path] | tuple[str | Path, ...]) -> RunTables:
    """Read and concatenate the tables of run folders (they may hold different models or scenarios).

    A scenario run with several click policies among the runs is split into one label per policy,
    ``"<scenario> (<policy>)"``, so that different protocols are never averaged together. The same
    run given twice is an error (its cases would count twice).
    """
    if not runs:
        raise RunError("no run folder given")
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in _TABLE_NAMES}
    configs, seen = [], {}
    for run in map(Path, runs):
        config = load_config(run)
        run_id = str(config.get("run_id"))
        if run_id in seen:
            raise RunError(f"{run}: run {run_id!r} was already given as {seen[run_id]}; give each run once")
        seen[run_id] = run
        configs.append({**config, "_folder": str(run)})
        for name in _TABLE_NAMES:
            parts[name].append(read_run_table(run, name))
    tables = {name: pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
              for name, frames in parts.items()}
    cases = tables["cases"]
    previews = {}
    for row in cases[cases["status"] == "ok"].itertuples(index=False):
        path = seen[str(row.run_id)] / "previews" / f"{case_key(row.model, row.scenario, row.test_set, row.case)}.npz"
        if path.is_file():
            previews[(row.run_id, row.model, row.scenario, row.test_set, row.case)] = path
    tables, rename = _label_policies(tables)
    previews = {(m, rename.get((s, p_run), s), t, c): path
                for (p_run, m, s, t, c), path in previews.items()}
    return RunTables(**tables, configs=configs, previews=previews)


def _label_policies(tables: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict]:
    """Rename scenarios that were run with several click policies; returns the (scenario, run_id) map."""
    cases = tables["cases"]
    policies = cases.groupby("scenario")["click_policy"].nunique()
    mixed = set(policies[policies > 1].index)
    if not mixed:
        return tables, {}
    out = dict(tables)
    for name in ("interactions", "lesions", "cases"):
        frame = tables[name]
        hit = frame["scenario"].isin(mixed)
        if hit.any():
            labels = frame["scenario"].astype(str) + " (" + frame["click_policy"].astype(str) + ")"
            out[name] = frame.assign(scenario=frame["scenario"].where(~hit, labels))
    pairs = cases[cases["scenario"].isin(mixed)][["scenario", "run_id", "click_policy"]].drop_duplicates()
    return out, {(s, r): f"{s} ({p})" for s, r, p in pairs.itertuples(index=False)}


def describe(values: pd.Series | np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Mean, between-case std (ddof 1), bootstrap 95% CI of the mean and n, NaNs dropped."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    lo, hi = bootstrap_ci(v, n_resamples=N_RESAMPLES, seed=seed)
    return {"mean": float(v.mean()) if v.size else math.nan,
            "std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
            "ci_low": lo, "ci_high": hi, "n": int(v.size)}


def complete_sessions(interactions: pd.DataFrame) -> pd.DataFrame:
    """Carry every session's last row forward to the last interaction of its scenario.

    Rows added here are flagged ``carried_forward``. Runs written by the engine already carry early
    stops to the budget; what remains are sessions whose budget is shorter by design (a
    ``global-single`` scan with fewer lesions than the budget clicks once per lesion).
    """
    if interactions.empty:
        return interactions
    frame = interactions.reset_index(drop=True)
    session_end = frame.groupby(SESSION, dropna=False, sort=False)["interaction"].transform("max")
    last = frame[frame["interaction"] == session_end]
    target = frame.groupby("scenario")["interaction"].transform("max").loc[last.index]
    missing = (target - last["interaction"]).to_numpy()
    if not missing.any():
        return interactions
    filler = last.loc[last.index.repeat(missing)].copy()
    step = filler.groupby(level=0).cumcount().to_numpy() + 1
    filler["interaction"] = filler["interaction"].to_numpy() + step
    filler["carried_forward"] = True
    for column in ("n_clicks", "n_boxes", "latency_ms", "overhead_ms"):
        if column in filler:
            filler[column] = 0 if column.startswith("n_") else np.nan
    return pd.concat([frame, filler], ignore_index=True)


def per_case(frame: pd.DataFrame, value: str | list[str], *, by_fold: bool = False) -> pd.DataFrame:
    """One row per model × scenario × test set × case: ``value`` averaged over the case's rows (its
    lesions), then over folds and seeds (``by_fold=True`` keeps one row per fold)."""
    values = [value] if isinstance(value, str) else list(value)
    inner = [*GROUP, "fold", "seed", "case"]
    out = frame.groupby(inner, dropna=False)[values].mean().reset_index()
    outer = [*GROUP, "fold", "case"] if by_fold else [*GROUP, "case"]
    return out.groupby(outer, dropna=False)[values].mean().reset_index()


def per_case_at(interactions: pd.DataFrame, value: str, interaction: int | None = None, *,
                by_fold: bool = False) -> pd.DataFrame:
    """Per-case ``value`` after ``interaction`` interactions (the row with that number), or after the
    last one (``None``: each session's final row, i.e. at the stop, carried forward).

    Sessions are completed first (:func:`complete_sessions`); a scenario whose sessions never reach
    ``interaction`` (``lesion-single`` has one) contributes no rows.
    """
    frame = complete_sessions(interactions)
    if interaction is None:
        frame = frame[frame["interaction"] == frame.groupby("scenario")["interaction"].transform("max")]
    else:
        frame = frame[frame["interaction"] == interaction]
    return per_case(frame, value, by_fold=by_fold)


def _level_rows(interactions: pd.DataFrame, level: str) -> tuple[pd.DataFrame, str]:
    if level not in ("lesion", "scan"):
        raise ValueError(f"level must be 'lesion' or 'scan', got {level!r}")
    lesion = interactions["lesion_id"] > 0
    if level == "lesion":
        return interactions[lesion], "dice_lesion"
    return interactions[~lesion], "dice_scan"


def _summarise(values: pd.DataFrame, value: str, prefix: str, *, by: list[str] = GROUP) -> pd.DataFrame:
    columns = [*by, f"n_{prefix}", *(f"{prefix}_{k}" for k in ("mean", "std", "ci_low", "ci_high"))]
    rows = []
    for key, frame in values.groupby(by, dropna=False):
        stats = describe(frame[value])
        rows.append({**dict(zip(by, key)), f"n_{prefix}": stats.pop("n"), **{f"{prefix}_{k}": v for k, v in stats.items()}})
    return pd.DataFrame(rows, columns=columns)


def curves(interactions: pd.DataFrame, *, level: str) -> pd.DataFrame:
    """Dice per interaction: ``level="lesion"`` (lesion scenarios, ``dice_lesion``) or ``"scan"``
    (global scenarios, ``dice_scan``); per case first, then mean, std and CI over cases.

    Every case counts at every interaction: early-stopped sessions carry their last value.
    """
    frame, value = _level_rows(interactions, level)
    columns = [*GROUP, "interaction", "n_cases", "mean", "std", "ci_low", "ci_high"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = complete_sessions(frame)
    cases = frame.groupby([*GROUP, "fold", "seed", "case", "interaction"], dropna=False)[value].mean().reset_index()
    cases = cases.groupby([*GROUP, "case", "interaction"])[value].mean().reset_index()
    table = _summarise(cases, value, "x", by=[*GROUP, "interaction"])
    table.columns = [c.removeprefix("x_") if c != "n_x" else "n_cases" for c in table.columns]
    return table[columns]


def _case_means(cases: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    finite = cases.assign(**{c: cases[c].replace([np.inf, -np.inf], np.nan) for c in columns})
    return per_case(finite, columns).groupby(GROUP)[columns].mean().reset_index()


def main_table(tables: RunTables, *, budget: int | None = None) -> pd.DataFrame:
    """One row per model × scenario × test set with the headline numbers.

    Lesion scenarios: lesion Dice after 1 and after ``budget`` interactions (default 3) and after
    the last; all scenarios: final scan Dice (mean, between-case std, bootstrap CI each), then the
    means over cases of the other per-case metrics. HD95 of an empty prediction is infinite and is
    left out of its mean.
    """
    budget = budget or DEFAULT_BUDGET
    ok = tables.ok_cases
    out = _counts(tables.cases).reset_index()
    lesion_rows, _ = _level_rows(tables.interactions, "lesion")
    pieces = []
    if len(lesion_rows):
        points = {"dice_lesion_at_1": 1, f"dice_lesion_at_{budget}": budget, "dice_lesion_final": None}
        for label, at in points.items():
            pieces.append(_summarise(per_case_at(lesion_rows, "dice_lesion", at), "dice_lesion", label))
    if len(ok):
        pieces.append(_summarise(per_case(ok, "dice_scan"), "dice_scan", "dice_scan_final"))
        columns = ["nsd_scan", "hd95_scan_mm", "f1_any", "f1_iou10", "fp_volume_ml", "fn_volume_ml",
                   "n_interactions", "mean_latency_ms", "wall_time_s", "peak_memory_mb"]
        pieces.append(_case_means(ok, columns))
    if len(tables.lesions):
        lesion_columns = ["nsd_lesion", "hd95_lesion_mm", "auc_dice_norm"]
        les = tables.lesions.assign(hd95_lesion_mm=tables.lesions["hd95_lesion_mm"].replace([np.inf, -np.inf], np.nan))
        pieces.append(per_case(les, lesion_columns).groupby(GROUP)[lesion_columns].mean().reset_index())
    for piece in pieces:
        if len(piece):
            out = out.merge(piece.drop(columns=[c for c in piece.columns if c.startswith("n_dice")]), how="left", on=GROUP)
    return out


def size_table(lesions: pd.DataFrame) -> pd.DataFrame:
    """Final lesion Dice by lesion volume (< 1, 1–10, > 10 ml): per case mean within the bin, then
    mean, std and CI over the cases that have a lesion in the bin."""
    columns = [*GROUP, "size_bin", "n_lesions", "n_cases", "mean", "std", "ci_low", "ci_high"]
    if lesions.empty:
        return pd.DataFrame(columns=columns)
    edges = [b[0] for b in SIZE_BINS] + [math.inf]
    frame = lesions.assign(size_bin=pd.cut(lesions["lesion_volume_ml"], edges, labels=[b[2] for b in SIZE_BINS],
                                           right=False).astype(str))
    rows = []
    for key, f in frame.groupby([*GROUP, "size_bin"]):
        cases = f.groupby(["fold", "seed", "case"], dropna=False)["dice_lesion"].mean().groupby("case").mean()
        stats = describe(cases)
        n_lesions = len(f.drop_duplicates(["test_set", "case", "lesion_id"]))
        rows.append({**dict(zip([*GROUP, "size_bin"], key)), "n_lesions": n_lesions, "n_cases": stats.pop("n"), **stats})
    order = {b[2]: n for n, b in enumerate(SIZE_BINS)}
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values([*GROUP, "size_bin"], key=lambda s: s.map(order) if s.name == "size_bin" else s,
                             ignore_index=True)


def noc_table(tables: RunTables) -> pd.DataFrame:
    """NoC@X (mean over cases of the per-case mean over lesions) and NoF@X (lesions that never reached
    X within the budget, counted over all lesions) for lesion scenarios; NoC@X of the scan-level
    curve (mean over cases) for global scenarios. NoC is capped at the budget (DESIGN §2), so read
    it next to NoF."""
    levels = [round(x * 100) for x in THRESHOLDS]
    rows = []
    les = tables.lesions
    if len(les):
        noc = per_case(les, [f"noc_{x}" for x in levels]).groupby(GROUP).mean(numeric_only=True)
        counts = les.drop_duplicates(["run_id", *GROUP, "fold", "seed", "case", "lesion_id"])
        nof = counts.groupby(GROUP)[[f"reached_{x}" for x in levels]].agg(lambda r: int((~r.astype(bool)).sum()))
        nof.columns = [f"nof_{x}" for x in levels]
        lesion = noc.join(nof).join(counts.groupby(GROUP).size().rename("n_lesions"))
        rows.append(lesion.assign(level="lesion").reset_index())
    inter = tables.interactions
    scans = tables.ok_cases[tables.ok_cases["scenario"].isin(set(inter.loc[inter["lesion_id"] == 0, "scenario"]))]
    if len(scans):
        scan = per_case(scans, [f"noc_{x}_scan" for x in levels]).groupby(GROUP).mean(numeric_only=True)
        scan.columns = [c.removesuffix("_scan") for c in scan.columns]
        rows.append(scan.assign(level="scan").reset_index())
    columns = [*GROUP, "level", *(f"noc_{x}" for x in levels), "n_lesions", *(f"nof_{x}" for x in levels)]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.concat(rows, ignore_index=True).reindex(columns=columns)
    counts = ["n_lesions", *(f"nof_{x}" for x in levels)]
    return table.astype({c: "Int64" for c in counts})


def fold_table(tables: RunTables, *, budget: int | None = None) -> pd.DataFrame:
    """Headline numbers per fold (mean over the fold's cases), then mean ± std over folds.

    Empty unless some model × scenario × test set was evaluated under at least two folds.
    """
    columns = [*GROUP, "metric", "n_folds", "fold_mean", "fold_std"]
    ok = tables.ok_cases
    if ok["fold"].nunique(dropna=True) < 2:
        return pd.DataFrame(columns=columns)
    budget = budget or DEFAULT_BUDGET
    metrics = {"dice_scan_final": per_case(ok, "dice_scan", by_fold=True).rename(columns={"dice_scan": "v"})}
    lesion_rows, _ = _level_rows(tables.interactions, "lesion")
    if len(lesion_rows):
        for at, name in ((budget, f"dice_lesion_at_{budget}"), (None, "dice_lesion_final")):
            metrics[name] = per_case_at(lesion_rows, "dice_lesion", at, by_fold=True).rename(columns={"dice_lesion": "v"})
    rows = []
    for name, frame in metrics.items():
        per_fold = frame.dropna(subset=["fold"]).groupby([*GROUP, "fold"])["v"].mean()
        summary = per_fold.groupby(GROUP).agg(n_folds="count", fold_mean="mean", fold_std="std")
        rows.append(summary[summary["n_folds"] >= 2].reset_index().assign(metric=name))
    return pd.concat(rows, ignore_index=True)[columns]


def summary_table(tables: RunTables | list[str | Path]) -> pd.DataFrame:
    """The demo's compact table, per model × scenario × test set: cases, lesion Dice after 1 and after
    3 interactions (lesion scenarios), scan Dice at the stop (global scenarios: each session's last
    row), interactions used (global scenarios), mean model latency per interaction in ms."""
    if not isinstance(tables, RunTables):
        tables = load_runs(tables)
    inter = tables.interactions
    lesion_rows, _ = _level_rows(inter, "lesion")
    scan_rows, _ = _level_rows(inter, "scan")
    out = _counts(tables.cases)[["n_cases"]].rename(columns={"n_cases": "cases"})
    columns: dict[str, pd.Series] = {}
    if len(lesion_rows):
        for n in (1, 3):
            columns[f"lesion Dice @{n}"] = per_case_at(lesion_rows, "dice_lesion", n).groupby(GROUP)["dice_lesion"].mean()
    if len(scan_rows):
        columns["scan Dice at stop"] = per_case_at(scan_rows, "dice_scan").groupby(GROUP)["dice_scan"].mean()
        used = scan_rows[~scan_rows["carried_forward"].astype(bool)]
        used = used.groupby([*GROUP, "fold", "seed", "case"], dropna=False)["interaction"].max().rename("used").reset_index()
        columns["interactions used"] = per_case(used, "used").groupby(GROUP)["used"].mean()
    measured = inter[~inter["carried_forward"].astype(bool)]
    columns["latency ms"] = per_case(measured, "latency_ms").groupby(GROUP)["latency_ms"].mean()
    for name, series in columns.items():
        out[name] = series.reindex(out.index) if len(series) else math.nan
    return out.reset_index()


def _counts(cases: pd.DataFrame) -> pd.DataFrame:
    """Finished and failed cases per model × scenario × test set (indexed by GROUP)."""
    ok = cases["status"] == "ok"
    return cases.assign(n_cases=ok, n_failed=~ok).groupby(GROUP)[["n_cases", "n_failed"]].sum().astype(int)


def config_summary(tables: RunTables) -> dict[str, object]:
    """What was run, for the report's header: run ids, dates, models, scenarios and their options,
    click policies, seeds, folds, test sets, data folders and software versions."""
    configs = tables.configs
    versions: dict[str, set] = {}
    for config in configs:
        for name, version in config.get("versions", {}).items():
            versions.setdefault(name, set()).add(str(version))
    return {
        "runs": [f"{c.get('run_id')} ({c.get('_folder', '')})" for c in configs],
        "created": [str(c.get("created", "")) for c in configs],
        "models": sorted({m for c in configs for m in c.get("models", [])}),
        "scenarios": sorted({s for c in configs for s in c.get("scenarios", [])}),
        "click policies": sorted({str(c.get("click_policy", "")) for c in configs}),
        "seeds": sorted({str(c.get("seed")) for c in configs}),
        "folds": sorted({str(c.get("fold")) for c in configs}),
        "test sets": sorted({t for c in configs for t in c.get("test_sets", [])}),
        "data": sorted({str(c.get("data", "")) for c in configs}),
        "scenario options": {s: o for c in configs for s, o in c.get("scenario_options", {}).items()},
        "versions": {name: " / ".join(sorted(v)) for name, v in versions.items()},
    }
