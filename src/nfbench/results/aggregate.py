"""Aggregation of run tables into the numbers a paper reports (DESIGN §4).

Rules, each fixing a mistake of the original analysis (reference/seed_spec.md §4.2):

- **A case counts once.** Lesion metrics are averaged over the case's lesions first; a case
  evaluated under several folds or seeds is then averaged over those, so a test case is one
  statistical unit however many models of a cross-validation saw it. Only then are cases averaged.
- **The spread is between cases**: the standard deviation (ddof 1) of the per-case values, never
  an average of per-case standard deviations, with a seeded bootstrap 95% interval of the mean
  (:func:`nfbench.results.stats.bootstrap_ci`, expanded percentiles of 2000 resamples). The spread over folds
  is a separate table (:func:`fold_table`): the mean of each fold, then mean ± std over folds.
- **One protocol per row.** Runs that differ in click policy, budget or early-stop target are
  never averaged together: every table is grouped by :data:`GROUP`, which holds all three, and
  :func:`load_runs` labels such scenarios apart (``"lesion-corrective (budget 5)"``) for figures.
  Runs that differ in another scenario option of their config.json (the number of lesions K,
  alpha, boxes, the preset: :data:`SCENARIO_OPTIONS`) are labelled apart the same way
  (``"lesion-corrective (lesions 10)"``), so they are separate rows too.
- **"After N interactions" is the row whose ``interaction`` equals N** (1-based), never a
  positional row, and exists only for N ≤ the run's budget. Nothing is carried forward here: the
  engine writes every session with exactly ``budget`` rows (the rows after an early stop flagged
  ``carried_forward``), so every case is in every point of its protocol's curve and no run shows a
  value past its own budget.
- **HD95 = ∞** (an empty prediction, or a prediction of a scan without lesions) cannot enter a
  mean: each HD95 mean over the finite values comes with the count of infinite values
  (``n_hd95_*_inf``) and a capped mean (``hd95_*_mm_capped``) where ∞ is replaced by the image
  diagonal in mm (``diagonal_mm``, the largest distance two points of the image can have), so a
  model that predicts nothing pays the largest possible distance.
- **Lesion-free scans** have one flagged scan-level session (``lesion_free``): they are counted in
  the main table (``n_lesion_free``), are part of the scan curves of global scenarios and never of
  lesion curves.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from nfbench.interaction.scenarios import Scenario
from nfbench.results.schema import RUN_KEYS, TABLES, THRESHOLDS
from nfbench.results.stats import N_RESAMPLES, bootstrap_ci
from nfbench.results.store import RunError, load_config, read_run_table, row_key

__all__ = [
    "DEFAULT_BUDGET",
    "GROUP",
    "PROTOCOL",
    "SCENARIO_OPTIONS",
    "SESSION",
    "SIZE_BINS",
    "RunTables",
    "config_summary",
    "curves",
    "describe",
    "fold_table",
    "is_lesion_scenario",
    "load_runs",
    "main_table",
    "noc_table",
    "per_case",
    "per_case_at",
    "preview_key",
    "prompted_table",
    "prompted_text",
    "provenance_table",
    "provenance_warnings",
    "size_table",
    "summary_table",
]

PROTOCOL = ["scenario", "click_policy", "budget", "stop_dice"]
"""What makes two evaluations comparable: the same scenario, click policy, budget and stop target
(and the same :data:`SCENARIO_OPTIONS`, which :func:`load_runs` writes into the scenario's label)."""

_IN_PROTOCOL = ("name", "interactions", "click_policy", "stop_dice")
"""Scenario options that the PROTOCOL columns already hold (``interactions`` is the budget, or unused)."""

SCENARIO_OPTIONS = tuple(f.name for f in fields(Scenario) if f.name not in _IN_PROTOCOL)
"""The scenario options of a run's config.json that change its numbers beside the PROTOCOL columns."""

GROUP = ["model", "scenario", "test_set", *PROTOCOL[1:]]
"""One row of every summary table: a model on one protocol and a test set."""

SESSION = [*RUN_KEYS, "lesion_id"]
"""One session: a lesion (lesion scenarios) or a scan (global scenarios, lesion-free scans; ``lesion_id`` 0)."""

SIZE_BINS = ((0.0, 1.0, "< 1 ml"), (1.0, 10.0, "1–10 ml"), (10.0, math.inf, "> 10 ml"))
"""Lesion-volume strata: [0, 1), [1, 10) and [10, ∞) ml."""

DEFAULT_BUDGET = 3
"""Interaction at which lesion scenarios are summarised unless told otherwise (the paper's 3)."""

_TABLE_NAMES = ("interactions", "lesions", "cases", "clicks")

_OPTIONAL = ("nsd_cvpr_scan", "auc_dice_scan_cvpr", "nsd_cvpr_lesion", "auc_dice_cvpr", "auc_nsd_cvpr",
             "peak_gpu_memory_mb")
"""Main-table columns shown only when some run has a value (cvpr25 preset scores, CUDA memory)."""


@dataclass(frozen=True)
class RunTables:
    """The tables of one or more runs, concatenated, and what a report needs besides.

    ``previews`` maps (model, scenario, test_set, case, fold, seed) to the ``.npz`` overlay file of
    that case result (``fold`` None when the run has none);
    ``provenance`` has one row per case result (empty for runs written before it was recorded).
    """

    interactions: pd.DataFrame
    lesions: pd.DataFrame
    cases: pd.DataFrame
    clicks: pd.DataFrame
    configs: list[dict] = field(default_factory=list)
    provenance: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TABLES["provenance"])))
    previews: dict[tuple, Path] = field(default_factory=dict)

    @property
    def ok_cases(self) -> pd.DataFrame:
        """Cases that finished (failed cases have a row with ``status == "failed"`` and nothing else)."""
        return self.cases[self.cases["status"] == "ok"]


def load_runs(runs: list[str | Path] | tuple[str | Path, ...]) -> RunTables:
    """Read and concatenate the tables of run folders (they may hold different models or scenarios).

    A scenario run under several protocols among the runs (click policies, budgets, stop targets
    or other scenario options of the runs' config.json) gets one label per protocol naming what
    differs, ``"<scenario> (<policy>, budget <n>, stop <dice>, lesions <k>)"``; a run that recorded
    no scenario options is never taken for equal to one that did (``"options not recorded"``). The
    same run given twice is an error (its cases would count twice), and so are
    a run whose tables lack a column of the schema and one whose sessions do not have one row per
    interaction up to their budget (both written by an older nfbench).
    """
    if not runs:
        raise RunError("no run folder given")
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in _TABLE_NAMES}
    provenance: list[pd.DataFrame] = []
    configs, seen, variant, options = [], {}, {}, []
    for run in map(Path, runs):
        config = load_config(run)
        run_id = str(config.get("run_id"))
        if run_id in seen:
            raise RunError(f"{run}: run {run_id!r} was already given as {seen[run_id]}; give each run once")
        seen[run_id] = run
        variant[run_id] = bool(config.get("variant_keys"))
        if (run / "provenance.parquet").is_file():
            provenance.append(pd.read_parquet(run / "provenance.parquet"))
        configs.append({**config, "_folder": str(run)})
        options += _recorded_options(config)
        for name in _TABLE_NAMES:
            frame = read_run_table(run, name)
            missing = [c for c in TABLES[name] if c not in frame.columns]
            if missing:
                raise RunError(f"{run}: the {name} table lacks the columns {', '.join(missing)}; the run was written "
                               "by an older nfbench, evaluate it again")
            parts[name].append(frame)
        _check_sessions(parts["interactions"][-1], run)
    tables = {name: pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
              for name, frames in parts.items()}
    labels = _protocol_labels(_protocols(tables["cases"], options))
    labelled = {name: frame.assign(scenario=_labelled(frame, labels)) for name, frame in tables.items()}
    _check_distinct_cases(labelled["cases"], seen)
    previews = {}
    for row, label in zip(tables["cases"].itertuples(index=False), labelled["cases"]["scenario"]):
        if row.status != "ok":
            continue
        key = row_key(row, variant=variant[str(row.run_id)])
        path = seen[str(row.run_id)] / "previews" / f"{key}.npz"
        if path.is_file():
            previews[preview_key(row.model, label, row.test_set, row.case, row.fold, row.seed)] = path
    found = [f for f in provenance if len(f)]
    extra = {"provenance": pd.concat(found, ignore_index=True)} if found else {}
    return RunTables(**labelled, configs=configs, previews=previews, **extra)


def preview_key(model: str, scenario: str, test_set: str, case: str, fold: object, seed: object) -> tuple:
    """The key of :attr:`RunTables.previews` for one case result (a study holds several folds and seeds)."""
    return (model, scenario, test_set, case, None if fold is None or pd.isna(fold) else int(fold), int(seed))


def _check_distinct_cases(cases: pd.DataFrame, folders: dict[str, Path]) -> None:
    """Two runs holding the same case result (model, protocol, fold, seed, test set, case) would
    count it twice in every mean: refused, naming both runs."""
    keys = ["model", *PROTOCOL, "fold", "seed", "test_set", "case"]
    ok = cases[cases["status"] == "ok"]
    twice = ok[ok.duplicated(keys, keep=False)]
    if len(twice):
        _, group = next(iter(twice.groupby(keys, dropna=False, sort=False)))
        first = group.iloc[0]
        runs = sorted({str(folders[str(r)]) for r in group["run_id"]})
        raise RunError(f"{twice[keys].drop_duplicates().shape[0]} case result(s) are in more than one run (first: {first['model']}, "
                       f"{first['scenario']}, {first['test_set']}/{first['case']} in {' and '.join(runs)}); a report "
                       "over both would count them twice: give runs with distinct cases")


def _check_sessions(interactions: pd.DataFrame, run: Path) -> None:
    """Every session must have the rows 1..budget (the engine pads early stops): aggregation relies on it."""
    if interactions.empty:
        return
    sessions = interactions.groupby(SESSION, dropna=False)["interaction"].agg(["size", "max", "nunique"]).reset_index()
    bad = sessions[(sessions["size"] != sessions["budget"]) | (sessions["max"] != sessions["budget"])
                   | (sessions["nunique"] != sessions["size"])]
    if len(bad):
        first = bad.iloc[0]
        raise RunError(f"{run}: {len(bad)} session(s) do not have one row per interaction up to their budget (first: "
                       f"{first['model']}, {first['scenario']}, case {first['case']}, lesion {first['lesion_id']}: "
                       f"{first['size']} rows, budget {first['budget']}); the run was written by an older nfbench, "
                       "evaluate it again")


def _recorded_options(config: dict) -> list[dict]:
    """The run's protocols as its config.json records them: run_id, the PROTOCOL columns its rows
    have and the :data:`SCENARIO_OPTIONS`, one dict per entry of ``scenario_options``.

    The PROTOCOL columns come from the :class:`Scenario` the options make, as the engine derives
    its rows' keys, so an entry is found whether it is keyed by the scenario's name (`nfbench
    evaluate`) or by a protocol label (`nfbench grid`).
    """
    known = {f.name for f in fields(Scenario)}
    rows = []
    for recorded in config.get("scenario_options", {}).values():
        scenario = Scenario(**{k: v for k, v in recorded.items() if k in known})
        rows.append({"run_id": str(config.get("run_id")), "scenario": scenario.name,
                     "click_policy": scenario.recorded_policy, "budget": scenario.budget,
                     "stop_dice": math.nan if scenario.stop_dice is None else float(scenario.stop_dice),
                     **{k: _hashable(recorded[k]) for k in SCENARIO_OPTIONS if k in recorded}})
    return rows


def _hashable(value: object) -> object:
    """An option value that can be compared and grouped (a list or dict as its JSON text)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)


def _protocols(cases: pd.DataFrame, options: list[dict]) -> pd.DataFrame:
    """Each run's protocols (run_id + PROTOCOL) with the scenario options it recorded (None where it
    recorded none)."""
    protocols = cases[["run_id", *PROTOCOL]].drop_duplicates().astype({"run_id": str})
    if not options:
        return protocols
    recorded = pd.DataFrame(options).drop_duplicates(["run_id", *PROTOCOL]).astype({"budget": protocols["budget"].dtype})
    merged = protocols.merge(recorded, on=["run_id", *PROTOCOL], how="left")
    extra = [c for c in merged.columns if c not in protocols.columns]
    return merged.assign(**{c: merged[c].astype(object).where(merged[c].notna(), None) for c in extra})


def _protocol_labels(protocols: pd.DataFrame) -> pd.DataFrame:
    """The label of every protocol of a scenario run under several: run_id, PROTOCOL + ``label``,
    naming each PROTOCOL column or scenario option that differs between them; a run that recorded
    no options is labelled so (the other protocols then keep the plain name if nothing else differs)."""
    options = [c for c in protocols.columns if c not in ("run_id", *PROTOCOL)]
    rows = []
    for scenario, group in protocols.groupby("scenario"):
        if len(group.drop(columns="run_id").drop_duplicates()) < 2:
            continue
        recorded = group[options].notna().any(axis=1) if options else pd.Series(False, index=group.index)
        varying = [c for c in PROTOCOL[1:] if group[c].nunique(dropna=False) > 1]
        varying += [c for c in options if group.loc[recorded, c].nunique(dropna=False) > 1]
        for (_, row), known in zip(group.iterrows(), recorded):
            parts = [_protocol_part(c, row[c]) for c in varying if known or c not in options]
            if not known and recorded.any():
                parts.append("options not recorded")
            label = f"{scenario} ({', '.join(parts)})" if parts else scenario
            rows.append({**{c: row[c] for c in ["run_id", *PROTOCOL]}, "label": label})
    return pd.DataFrame(rows, columns=["run_id", *PROTOCOL, "label"])


def _protocol_part(column: str, value: object) -> str:
    if column == "budget":
        return f"budget {int(value)}"
    if column == "stop_dice":
        return "no stop" if pd.isna(value) else f"stop {float(value):g}"
    if column == "click_policy":
        return str(value)
    if value is None or pd.isna(value):
        return f"{column} unknown"
    if isinstance(value, bool):
        return f"{column} {'yes' if value else 'no'}"
    return f"{column} {value:g}" if isinstance(value, float) else f"{column} {value}"


def _labelled(frame: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """The scenario column of ``frame`` with the protocol labels put in (row order kept)."""
    if labels.empty or frame.empty:
        return frame["scenario"]
    keys = ["run_id", *PROTOCOL]
    label = frame[keys].astype({"run_id": str}).merge(labels, on=keys, how="left")["label"].to_numpy()
    return frame["scenario"].where(pd.isna(label), pd.Series(label, index=frame.index))


def describe(values: pd.Series | np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Mean, between-case std (ddof 1), bootstrap 95% CI of the mean and n, NaNs dropped."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    lo, hi = bootstrap_ci(v, n_resamples=N_RESAMPLES, seed=seed)
    return {"mean": float(v.mean()) if v.size else math.nan,
            "std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
            "ci_low": lo, "ci_high": hi, "n": int(v.size)}


def _mean_by(frame: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    return frame.groupby(by, dropna=False)[values].mean().reset_index()


def per_case(frame: pd.DataFrame, value: str | list[str], *, by_fold: bool = False) -> pd.DataFrame:
    """One row per model × protocol × test set × case: ``value`` averaged over the case's rows (its
    lesions), then over folds and seeds (``by_fold=True`` keeps one row per fold)."""
    values = [value] if isinstance(value, str) else list(value)
    out = _mean_by(frame, [*GROUP, "fold", "seed", "case"], values)
    return _mean_by(out, [*GROUP, "fold", "case"] if by_fold else [*GROUP, "case"], values)


def per_case_at(interactions: pd.DataFrame, value: str, interaction: int | None = None, *,
                by_fold: bool = False) -> pd.DataFrame:
    """Per-case ``value`` after ``interaction`` interactions (the row with that number), or after the
    last one (``None``: the row at the session's budget, i.e. at the stop).

    A protocol whose budget is below ``interaction`` (``lesion-single`` has one) contributes no rows.
    """
    at = interactions["budget"] if interaction is None else interaction
    return per_case(interactions[interactions["interaction"] == at], value, by_fold=by_fold)


def is_lesion_scenario(scenario: pd.Series) -> pd.Series:
    """``lesion-*`` scenarios prompt one lesion per session (a protocol label starts with the name)."""
    return scenario.astype(str).str.startswith("lesion-")


def _level_rows(interactions: pd.DataFrame, level: str) -> tuple[pd.DataFrame, str]:
    """Rows of lesion curves (the lesion sessions) or of scan curves (the scan sessions of global
    scenarios, lesion-free scans included)."""
    if level not in ("lesion", "scan"):
        raise ValueError(f"level must be 'lesion' or 'scan', got {level!r}")
    if level == "lesion":
        return interactions[interactions["lesion_id"] > 0], "dice_lesion"
    scan = (interactions["lesion_id"] == 0) & ~is_lesion_scenario(interactions["scenario"])
    return interactions[scan], "dice_scan"


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

    Each protocol's curve runs from 1 to its budget, with every case at every point (the engine
    pads early-stopped sessions).
    """
    frame, value = _level_rows(interactions, level)
    columns = [*GROUP, "interaction", "n_cases", "mean", "std", "ci_low", "ci_high"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    cases = _mean_by(frame, [*GROUP, "fold", "seed", "case", "interaction"], [value])
    cases = _mean_by(cases, [*GROUP, "case", "interaction"], [value])
    table = _summarise(cases, value, "x", by=[*GROUP, "interaction"])
    table.columns = [c.removeprefix("x_") if c != "n_x" else "n_cases" for c in table.columns]
    return table[columns]


def _finite_means(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per GROUP: the mean over cases of each column, infinite values left out."""
    finite = frame.assign(**{c: frame[c].replace([np.inf, -np.inf], np.nan) for c in columns})
    return _mean_by(per_case(finite, columns), GROUP, columns)


def _hd95(frame: pd.DataFrame, column: str, level: str) -> pd.DataFrame:
    """Per GROUP: the HD95 mean over finite values, the count of infinite values (rows) and the mean
    with ∞ capped at the image diagonal (``frame`` has ``diagonal_mm``)."""
    infinite = np.isinf(frame[column].astype(float))
    capped = f"{column}_capped"
    out = _finite_means(frame.assign(**{capped: frame[column].where(~infinite, frame["diagonal_mm"])}),
                        [column, capped])
    counts = frame.assign(n=infinite).groupby(GROUP, dropna=False)["n"].sum().astype(int)
    out = out.merge(counts.rename(f"n_hd95_{level}_inf").reset_index(), on=GROUP, how="left")
    return out[[*GROUP, column, f"n_hd95_{level}_inf", capped]]


def _present(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """``columns`` without the optional ones that no row has a value for (no empty columns)."""
    return [c for c in columns if c not in _OPTIONAL or frame[c].notna().any()]


def main_table(tables: RunTables, *, budget: int | None = None) -> pd.DataFrame:
    """One row per model × protocol × test set with the headline numbers.

    Counts: finished, failed and lesion-free cases (``n_cases``, ``n_failed``, ``n_lesion_free``).
    Lesion scenarios: lesion Dice after 1 and after ``budget`` interactions (default 3; NaN for a
    protocol with a smaller budget) and after the last; all scenarios: final scan Dice (mean,
    between-case std, bootstrap CI each), then the means over cases of the other per-case metrics.
    HD95 is infinite where the prediction (or the truth) is empty: ``hd95_*_mm`` is the mean over
    finite values, ``n_hd95_*_inf`` counts the infinite ones and ``hd95_*_mm_capped`` is the mean
    with ∞ replaced by the image diagonal in mm. Runs of the cvpr25 preset add the challenge's
    scores: the gated NSD (``nsd_cvpr_*``, 0 where Dice ≤ 0.2) beside ours and the AUCs over the 5
    click steps (``auc_dice_cvpr``, ``auc_nsd_cvpr``, ``auc_dice_scan_cvpr``, range 0–4).
    """
    budget = budget or DEFAULT_BUDGET
    ok = tables.ok_cases
    out = _counts(tables.cases)
    lesion_rows, _ = _level_rows(tables.interactions, "lesion")
    pieces = []
    if len(lesion_rows):
        points = {"dice_lesion_at_1": 1, f"dice_lesion_at_{budget}": budget, "dice_lesion_final": None}
        for label, at in points.items():
            pieces.append(_summarise(per_case_at(lesion_rows, "dice_lesion", at), "dice_lesion", label))
    if len(ok):
        pieces.append(_summarise(per_case(ok, "dice_scan"), "dice_scan", "dice_scan_final"))
        pieces.append(_finite_means(ok, _present(ok, ["nsd_scan", "nsd_cvpr_scan"])))
        pieces.append(_hd95(ok, "hd95_scan_mm", "scan"))
        columns = ["auc_dice_scan_cvpr", "f1_any", "f1_iou10", "fp_volume_ml", "fn_volume_ml", "fp_voxel_volume_ml",
                   "fn_voxel_volume_ml", "n_interactions", "mean_latency_ms", "wall_time_s", "peak_memory_mb",
                   "peak_gpu_memory_mb"]
        pieces.append(_finite_means(ok, _present(ok, columns)))
    les = tables.lesions
    if len(les):
        pieces.append(_finite_means(les, _present(les, ["nsd_lesion", "nsd_cvpr_lesion"])))
        diagonals = tables.cases[[*RUN_KEYS, "diagonal_mm"]]
        pieces.append(_hd95(les.merge(diagonals, on=list(RUN_KEYS), how="left"), "hd95_lesion_mm", "lesion"))
        pieces.append(_finite_means(les, _present(les, ["auc_dice_norm", "auc_dice_cvpr", "auc_nsd_cvpr"])))
    for piece in pieces:
        if len(piece):
            out = out.merge(piece.drop(columns=[c for c in piece.columns if c.startswith("n_dice")]), how="left", on=GROUP)
    return out.astype({c: "Int64" for c in out.columns if c.startswith("n_hd95_")})


def prompted_table(tables: RunTables) -> pd.DataFrame:
    """Per lesion-scenario protocol × test set: how many of a case's lesions were prompted (the K
    largest) and what share of the lesions and of their volume that is, over the finished cases
    with lesions (the counts are the truth's, the same for every model, so cases are not repeated
    per model). Scan-level and detection metrics score every lesion of the scan: where the share
    is small they mostly measure the lesions no click was placed on.

    ``prompted_share`` is the prompted lesions over all lesions of the set's cases;
    ``prompted_volume_share`` the same for their volume (NaN where volumes were not recorded).
    """
    key = [*PROTOCOL, "test_set", "case"]
    columns = [*PROTOCOL, "test_set", "n_cases", "lesions_per_case", "lesions_min", "lesions_max",
               "prompted_per_case", "prompted_share", "prompted_volume_share"]
    ok = tables.ok_cases
    cases = ok[is_lesion_scenario(ok["scenario"]) & (ok["n_lesions"] > 0)].drop_duplicates(key)
    if cases.empty:
        return pd.DataFrame(columns=columns)
    prompted = tables.lesions.drop_duplicates([*key, "lesion_id"]).groupby(key, dropna=False)["lesion_volume_ml"].sum()
    cases = cases.merge(prompted.rename("prompted_ml").reset_index(), on=key, how="left")
    rows = []
    for group, f in cases.groupby([*PROTOCOL, "test_set"], dropna=False):
        volume = f["gt_volume_ml"].sum(min_count=1)
        rows.append({**dict(zip([*PROTOCOL, "test_set"], group)), "n_cases": len(f),
                     "lesions_per_case": float(f["n_lesions"].mean()), "lesions_min": int(f["n_lesions"].min()),
                     "lesions_max": int(f["n_lesions"].max()), "prompted_per_case": float(f["n_lesions_prompted"].mean()),
                     "prompted_share": float(f["n_lesions_prompted"].sum() / f["n_lesions"].sum()),
                     "prompted_volume_share": float(f["prompted_ml"].fillna(0.0).sum() / volume) if volume > 0 else math.nan})
    return pd.DataFrame(rows, columns=columns)


def prompted_text(row: pd.Series | tuple) -> str:
    """``"9 of 9 lesions per case prompted (100%)"`` or, where cases differ, ``"20 of 280.5 lesions per
    case (mean) prompted (7%)"`` for a row of :func:`prompted_table`."""
    row = pd.Series(row._asdict()) if hasattr(row, "_asdict") else row
    total = round(row["lesions_per_case"], 1)
    mean = "" if float(total).is_integer() else " (mean)"
    return (f"{round(row['prompted_per_case'], 1):g} of {total:g} lesions per case{mean} "
            f"prompted ({row['prompted_share']:.0%})")


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
    for key, f in frame.groupby([*GROUP, "size_bin"], dropna=False):
        cases = f.groupby(["fold", "seed", "case"], dropna=False)["dice_lesion"].mean().groupby("case").mean()
        stats = describe(cases)
        n_lesions = len(f.drop_duplicates(["test_set", "case", "lesion_id"]))
        rows.append({**dict(zip([*GROUP, "size_bin"], key)), "n_lesions": n_lesions, "n_cases": stats.pop("n"), **stats})
    order = {b[2]: n for n, b in enumerate(SIZE_BINS)}
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values([*GROUP, "size_bin"], key=lambda s: s.map(order) if s.name == "size_bin" else s,
                             ignore_index=True, na_position="first")


def noc_table(tables: RunTables) -> pd.DataFrame:
    """NoC@X (mean over cases of the per-case mean over lesions) and NoF@X (lesions that never reached
    X within the budget, counted over all lesions) for lesion scenarios; NoC@X of the scan-level
    curve (mean over cases) and NoF@X (scans that never reached X) for global scenarios. NoC is
    capped at the budget (DESIGN §2), so read it next to NoF. A level above the protocol's
    ``stop_dice`` is empty: sessions stop before they could reach it."""
    levels = [round(x * 100) for x in THRESHOLDS]
    rows = []
    les = tables.lesions
    if len(les):
        lesion = _mean_by(per_case(les, [f"noc_{x}" for x in levels]), GROUP, [f"noc_{x}" for x in levels])
        counts = les.drop_duplicates([*RUN_KEYS, "lesion_id"])
        failed = counts.assign(**{f"nof_{x}": ~counts[f"reached_{x}"].astype(bool) for x in levels}, n_lesions=1)
        nof = failed.groupby(GROUP, dropna=False)[["n_lesions", *(f"nof_{x}" for x in levels)]].sum().reset_index()
        rows.append(lesion.merge(nof, on=GROUP).assign(level="lesion"))
    scans = tables.ok_cases[~is_lesion_scenario(tables.ok_cases["scenario"])]
    if len(scans):
        columns = [f"noc_{x}_scan" for x in levels]
        scan = _mean_by(per_case(scans, columns), GROUP, columns)
        curves = tables.interactions[~is_lesion_scenario(tables.interactions["scenario"])
                                     & ~tables.interactions["lesion_free"].astype(bool)]
        best = curves.groupby(SESSION, dropna=False)["dice_scan"].max().reset_index()
        failed = best.assign(**{f"nof_{x}": best["dice_scan"] < x / 100 for x in levels}, n_scans=1)
        nof = failed.groupby(GROUP, dropna=False)[["n_scans", *(f"nof_{x}" for x in levels)]].sum().reset_index()
        scan = scan.merge(nof, on=GROUP, how="left")
        rows.append(scan.rename(columns=lambda c: c.removesuffix("_scan")).assign(level="scan"))
    columns = [*GROUP, "level", *(f"noc_{x}" for x in levels), "n_lesions", "n_scans", *(f"nof_{x}" for x in levels)]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.concat(rows, ignore_index=True).reindex(columns=columns)
    counts = ["n_lesions", "n_scans", *(f"nof_{x}" for x in levels)]
    table = table.astype({c: "Int64" for c in counts})
    for x in levels:  # sessions stop at stop_dice: a higher level is never measured
        above = table["stop_dice"].notna() & (table["stop_dice"] < x / 100)
        table.loc[above, [f"noc_{x}", f"nof_{x}"]] = pd.NA
    return table


def fold_table(tables: RunTables, *, budget: int | None = None) -> pd.DataFrame:
    """Headline numbers per fold (mean over the fold's cases), then mean ± std over folds.

    Empty unless some model × protocol × test set was evaluated under at least two folds.
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
        per_fold = frame.dropna(subset=["fold"]).groupby([*GROUP, "fold"], dropna=False)["v"].mean()
        summary = per_fold.groupby(GROUP, dropna=False).agg(n_folds="count", fold_mean="mean", fold_std="std")
        rows.append(summary[summary["n_folds"] >= 2].reset_index().assign(metric=name))
    return pd.concat(rows, ignore_index=True)[columns]


def summary_table(tables: RunTables | list[str | Path]) -> pd.DataFrame:
    """The demo's compact table, per model × protocol × test set: cases, lesion Dice after 1 and after
    3 interactions (lesion scenarios; NaN past a protocol's budget), scan Dice at the stop (global
    scenarios: each session's last row), interactions used (global scenarios), mean model latency
    per interaction in ms."""
    if not isinstance(tables, RunTables):
        tables = load_runs(tables)
    inter = tables.interactions
    lesion_rows, _ = _level_rows(inter, "lesion")
    scan_rows, _ = _level_rows(inter, "scan")
    out = _counts(tables.cases)[[*GROUP, "n_cases"]].rename(columns={"n_cases": "cases"})
    columns: dict[str, pd.DataFrame] = {}
    if len(lesion_rows):
        for n in (1, 3):
            columns[f"lesion Dice @{n}"] = _mean_by(per_case_at(lesion_rows, "dice_lesion", n), GROUP, ["dice_lesion"])
    if len(scan_rows):
        columns["scan Dice at stop"] = _mean_by(per_case_at(scan_rows, "dice_scan"), GROUP, ["dice_scan"])
        scans = tables.ok_cases[~is_lesion_scenario(tables.ok_cases["scenario"])]
        columns["interactions used"] = _mean_by(per_case(scans, "n_interactions"), GROUP, ["n_interactions"])
    measured = inter[~inter["carried_forward"].astype(bool)]
    columns["latency ms"] = _mean_by(per_case(measured, "latency_ms"), GROUP, ["latency_ms"])
    for name, frame in columns.items():
        value = frame.rename(columns={c: name for c in frame.columns if c not in GROUP})
        out = out.merge(value, on=GROUP, how="left") if len(value) else out.assign(**{name: math.nan})
    return out


def _counts(cases: pd.DataFrame) -> pd.DataFrame:
    """Finished, failed and lesion-free (finished, no lesion in the truth) cases per GROUP."""
    ok = cases["status"] == "ok"
    counts = cases.assign(n_cases=ok, n_failed=~ok, n_lesion_free=ok & (cases["n_lesions"] == 0))
    columns = ["n_cases", "n_failed", "n_lesion_free"]
    return counts.groupby(GROUP, dropna=False)[columns].sum().astype(int).reset_index()


def config_summary(tables: RunTables) -> dict[str, object]:
    """What was run, for the report's header: run ids, dates, models, scenarios, click policies,
    seeds, folds, test sets, data folders, each run's own scenario and model options (two runs of
    one scenario may differ in them) and software versions."""
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
        "scenario options": {f"{c.get('run_id')} · {s}": o for c in configs
                             for s, o in c.get("scenario_options", {}).items()},
        "model options": {key: o for c in configs for key, o in _model_options(c).items()},
        "versions": {name: " / ".join(sorted(v)) for name, v in versions.items()},
    }


def _model_options(config: dict) -> dict[str, dict]:
    """A run's model specs (config.json's ``model_specs``) by ``"<run> · <model>[ (fold f)]"``: the
    model's own options, then its weights and device (those the run recorded)."""
    found = {}
    for spec in config.get("model_specs", []):
        fold = f" (fold {spec['fold']})" if spec.get("fold") is not None else ""
        options = {**spec.get("options", {}), "weights": spec.get("weights"), "device": spec.get("device")}
        found[f"{config.get('run_id')} · {spec.get('name')}{fold}"] = {k: v for k, v in options.items() if v is not None}
    return found


_SOFTWARE = ("nfbench_version", "nfbench_commit", "python_version", "numpy_version", "torch_version",
             "monai_version")
"""Provenance columns that must agree over every result of one report."""

_ORIGIN = ["model", "fold", "weights_sha256", "model_package", "model_package_version", *_SOFTWARE, "device", "host",
           "study_sha256"]


def provenance_table(tables: RunTables) -> pd.DataFrame:
    """Each distinct origin of the case results (model, fold, weights, versions, device, host, study
    file) with its count; one row per model and fold when all agree."""
    prov = tables.provenance
    if prov.empty:
        return pd.DataFrame(columns=[*_ORIGIN, "case_results"])
    frame = prov[_ORIGIN].astype({"fold": "object"}).fillna({"fold": "-"})
    frame = frame.assign(weights_sha256=frame["weights_sha256"].str[:12], study_sha256=frame["study_sha256"].str[:12])
    return frame.groupby(_ORIGIN, dropna=False).size().rename("case_results").reset_index()


def _spread(values: pd.Series) -> str:
    counts = values.replace("", "unknown").value_counts()
    return ", ".join(f"{value} ({n} case results)" for value, n in counts.items())


def provenance_warnings(tables: RunTables) -> list[str]:
    """Sentences for results of one report that do not come from one software or one set of weights:
    a version (nfbench, its commit, Python, NumPy, torch, MONAI, a model's package) that differs
    between case results, a model and fold whose results come from several weights files, results
    of several versions of a study file. Empty when all agree (or nothing was recorded)."""
    prov = tables.provenance
    if prov.empty:
        return []
    found = []
    for column in _SOFTWARE:
        if prov[column].nunique(dropna=False) > 1:
            found.append(f"the results come from different {column.replace('_', ' ')}s: {_spread(prov[column])}")
    for model, rows in prov.groupby("model"):
        rows = rows[rows["model_package"].fillna("") != ""]  # a case that failed before its model loaded has none
        if rows["model_package_version"].nunique(dropna=False) > 1:
            found.append(f"{model}: its package {rows['model_package'].iloc[0]} has different versions: "
                         f"{_spread(rows['model_package_version'])}")
    for (model, fold), rows in prov.groupby(["model", prov["fold"].astype("object").fillna("-")]):
        if rows["weights_sha256"].nunique(dropna=False) > 1:
            where = "" if fold == "-" else f" fold {fold}"
            found.append(f"{model}{where}: the results come from different weights: "
                         f"{_spread(rows['weights_sha256'].str[:12].rename(None))}")
    studies = prov["study_sha256"][prov["study_sha256"] != ""]
    if studies.nunique() > 1:
        found.append(f"the results come from {studies.nunique()} versions of the study file: {_spread(studies.str[:12])}")
    return found
