"""`nfbench report`: tables (CSV, Excel, Markdown), figures (PNG, SVG) and one self-contained HTML page.

Layout of the output folder::

    OUT/report.html          everything below in one file (figures inlined, no external resource)
    OUT/tables/<name>.csv    one CSV per table
    OUT/tables.xlsx          the same tables, one sheet each
    OUT/tables.md            the same tables as Markdown
    OUT/figures/<name>.png|svg
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

import nfbench
from nfbench.models.registry import registered_names
from nfbench.results import _html
from nfbench.results._html import counted, markdown_table
from nfbench.results.aggregate import (
    DEFAULT_BUDGET,
    GROUP,
    PROTOCOL,
    RunTables,
    config_summary,
    curves,
    fold_table,
    is_lesion_scenario,
    load_runs,
    main_table,
    noc_table,
    per_case_at,
    prompted_table,
    prompted_text,
    provenance_table,
    provenance_warnings,
    size_table,
    summary_table,
)
from nfbench.results.figures import (
    curve_figure,
    detection_figure,
    latency_figure,
    model_colours,
    noc_figure,
    overlay_figure,
    save_figure,
    size_figure,
)
from nfbench.results.stats import N_RESAMPLES, paired_comparisons, smallest_holm_p

__all__ = ["comparison_table", "few_cases_warnings", "markdown_table", "pooled_comparison_table", "report_tables",
           "unprompted_caveats", "write_report"]

MIN_TEST_CASES = 6
"""Below this many paired cases no two-sided Wilcoxon p-value can reach 0.05 even uncorrected (the
smallest is 2/2^n). It is a floor, not enough: after Holm over m comparisons the smallest p_holm
of 6 cases is m × 0.031 (see :func:`few_cases_warnings`)."""

ALPHA = 0.05
"""The significance level the warnings about too few cases refer to."""

PROMPTED_SHARE_MIN = 0.5
"""A lesion scenario's test set whose prompted lesions are fewer than this share of its lesions gets a
caveat beside the scan-level and detection numbers: they then score more lesions no click was placed
on than prompted ones, so they measure the protocol (K) more than the model."""

METHODS = (
    "Lesion metrics are averaged over each case's lesions first, then (for a case seen under several folds or "
    "seeds) over those, then over cases: the case is the unit. std is the between-case standard deviation "
    f"(ddof 1); the CI is the seeded bootstrap 95% interval of the mean ({N_RESAMPLES} resamples), its percentiles "
    "expanded for small samples (Hesterberg 2015) so that it covers about 93% with 6 cases instead of 88%; below "
    "5 cases no bootstrap interval is wide enough. "
    "Runs that differ in click policy, budget, early-stop target (stop_dice) or another scenario option of their "
    "configuration (lesions K, alpha, boxes, box_step, preset) are separate rows, never averaged or compared "
    "together; a scenario run under several such protocols is labelled with what differs, e.g. "
    "'lesion-corrective (budget 5)' or 'lesion-corrective (lesions 10)'. 'After N interactions' is the row with "
    "interaction = N and exists only up to the run's own budget. The engine writes every session up to its budget: a session that stopped early keeps "
    "its last value (rows flagged carried_forward), so every case counts at every interaction of its curve. "
    "HD95 is infinite where a prediction or a truth is empty: hd95_*_mm is the mean over finite values, "
    "n_hd95_*_inf the number of infinite values and hd95_*_mm_capped the mean with infinity replaced by the "
    "image diagonal in mm (the largest distance in the image). Scans without lesions are counted "
    "(n_lesion_free), are part of the scan curves of global scenarios with their scan Dice and never of lesion "
    "curves. Paired tests: two-sided Wilcoxon signed-rank test over the cases both models finished (paired by "
    "test set and case), Holm-corrected over all pairs; pooled comparisons (a protocol of several test sets): the same test over "
    "all its cases of every test set at once (each case of each set one pair, its patients differing from the other "
    "sets'), Holm-corrected as a family of their own; effect size = matched-pairs rank-biserial correlation "
    "(positive when model_a is better). Lesion volume strata: < 1 ml, 1–10 ml, > 10 ml."
)


def comparison_table(tables: RunTables, *, budget: int | None = None, shared_cases: bool = False) -> pd.DataFrame:
    """Paired Wilcoxon tests between models for every protocol × test set.

    Lesion scenarios compare the lesion Dice after ``budget`` interactions (default 3; a protocol
    whose budget is smaller, such as ``lesion-single``, is compared after its last one); global
    scenarios compare the scan Dice of the last row (at the stop). The ``compared`` column says which.
    Models whose case sets differ are compared only with ``shared_cases`` (see
    :func:`~nfbench.results.stats.paired_comparisons`).
    """
    by = [*PROTOCOL, "test_set", "compared"]
    return paired_comparisons(_compared_per_case(tables, budget), value="dice", by=by, shared_cases=shared_cases)


def pooled_comparison_table(tables: RunTables, *, budget: int | None = None, shared_cases: bool = False) -> pd.DataFrame:
    """The paired tests of :func:`comparison_table` pooled over the test sets of each protocol that
    has several: one two-sided Wilcoxon signed-rank test over all the protocol's cases, paired by
    test set and case (the test sets' patients differ, so every case is one independent pair), with
    its own Holm family (these rows only). ``test_sets`` names the sets pooled; a protocol of one
    test set has no row (its per-set comparison is the same test)."""
    per_case = _compared_per_case(tables, budget)
    names = per_case.groupby(PROTOCOL, dropna=False)["test_set"].unique().map(sorted)
    several = names[names.map(len) > 1].map(", ".join).rename("test_sets").reset_index()
    per_case = per_case.merge(several, on=PROTOCOL)
    by = [*PROTOCOL, "test_sets", "compared"]
    return paired_comparisons(per_case, value="dice", by=by, shared_cases=shared_cases)


def _compared_per_case(tables: RunTables, budget: int | None) -> pd.DataFrame:
    """The per-case value the paired tests compare (model, protocol, test set, case, ``dice``,
    ``compared``): the lesion Dice after ``budget`` interactions (or the protocol's last) in lesion
    scenarios, the scan Dice at the last interaction in global ones."""
    budget = budget or DEFAULT_BUDGET
    parts = []
    for _, rows in tables.interactions.groupby(PROTOCOL, dropna=False):
        lesion = bool((rows["lesion_id"] > 0).any())
        value = "dice_lesion" if lesion else "dice_scan"
        at = min(budget, int(rows["budget"].iloc[0])) if lesion else None
        label = (f"lesion Dice after {at} interaction(s)" if lesion else "scan Dice at the last interaction")
        part = per_case_at(rows[rows["lesion_id"] > 0] if lesion else rows, value, at).rename(columns={value: "dice"})
        parts.append(part.assign(compared=label))
    columns = [*GROUP, "case", "dice", "compared"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def few_cases_warnings(comparisons: pd.DataFrame) -> list[str]:
    """Sentences for comparisons that cannot be significant however large the effect: some rest on
    fewer than MIN_TEST_CASES cases, or the Holm family of the comparisons made (those with a
    p-value) cannot reach ALPHA even if each gave the smallest p its number of cases allows."""
    made = comparisons.loc[comparisons["p_value"].notna(), "n_cases"]
    found = []
    small = made[made < MIN_TEST_CASES]
    if len(small):
        found.append(f"{len(small)} comparison(s) rest on fewer than {MIN_TEST_CASES} cases (smallest n = "
                     f"{int(small.min())}): their p-values cannot reach {ALPHA:g} even before the Holm correction, and "
                     "bootstrap intervals of so few cases are little more than their range")
    best = smallest_holm_p(made)  # NaN when nothing was compared
    if best >= ALPHA:
        found.append(f"the {len(made)} comparison(s) are Holm-corrected together: even if each gave the smallest "
                     f"p-value its cases allow (2/2^n for n cases without ties), the smallest p_holm would be "
                     f"{best:.3g} ≥ {ALPHA:g}, so none of them can be significant; more cases (or fewer comparisons) "
                     "are needed")
    return found


def unprompted_caveats(prompted: pd.DataFrame) -> list[str]:
    """Sentences for the lesion-scenario test sets of :func:`~nfbench.results.aggregate.prompted_table`
    whose prompted share is below PROMPTED_SHARE_MIN: their scan-level and detection numbers mostly
    score lesions the protocol never prompted."""
    found = []
    for row in prompted[prompted["prompted_share"] < PROMPTED_SHARE_MIN].itertuples(index=False):
        volume = ("" if pd.isna(row.prompted_volume_share)
                  else f" (weighted by volume: the prompted lesions hold {row.prompted_volume_share:.0%} of it)")
        spread = ("" if row.lesions_min == row.lesions_max
                  else f", {row.lesions_min}–{row.lesions_max} lesions per case over its {counted(row.n_cases)}")
        found.append(f"{row.scenario} · {row.test_set}: {prompted_text(row)}{spread}. Its detection counts and F1 count every "
                     "lesion of the scan, so they mostly measure the lesions no click was placed on (the protocol's K), "
                     f"not the answer to the clicks; scan Dice, NSD, HD95 and the FP/FN volumes score them too{volume}")
    return found




def report_tables(tables: RunTables, *, budget: int | None = None, shared_cases: bool = False) -> dict[str, pd.DataFrame]:
    """Every table of the report, by name (also the Excel sheet and CSV file name)."""
    cases = tables.cases
    return {
        "summary": summary_table(tables),
        "main": main_table(tables, budget=budget),
        "comparisons": comparison_table(tables, budget=budget, shared_cases=shared_cases),
        "comparisons_pooled": pooled_comparison_table(tables, budget=budget, shared_cases=shared_cases),
        "prompted_lesions": prompted_table(tables),
        "lesion_size": size_table(tables.lesions),
        "noc": noc_table(tables),
        "folds": fold_table(tables, budget=budget),
        "curves_lesion": curves(tables.interactions, level="lesion"),
        "curves_scan": curves(tables.interactions, level="scan"),
        "failed_cases": cases[cases["status"] != "ok"][["run_id", "model", "scenario", "test_set", "case", "error"]],
        "provenance": provenance_table(tables),
    }


def _main_note(budget: int, tolerance: str) -> str:
    """The main table's column definitions (the HTML page and tables.md), at the report's budget and tolerance."""
    return (
        f"Per model × protocol (scenario, click policy, budget, stop_dice) × test set: lesion Dice after 1 and {budget} "
        "interactions (empty past the run's budget) and after the last, final scan Dice (mean, between-case std, "
        "bootstrap 95% CI), then means over cases of the other metrics. The lesion Dice (dice_lesion_*, the curves, "
        "the strata, NoC) scores the prompted lesion against the session's prediction with the voxels of the scan's "
        "other lesions left out of both, so predicting a neighbouring lesion costs nothing; the run's tables also "
        "hold dice_lesion_strict, the prompted lesion against the whole prediction (other lesions' voxels count as "
        "false positives, the original's definition). n_lesion_free counts the scans without "
        "lesions (their scan Dice is 1 when nothing is predicted). HD95: hd95_*_mm is the mean over finite "
        "values; n_hd95_*_inf counts the infinite values (empty prediction or truth) and hd95_*_mm_capped is the "
        "mean with infinity replaced by the image diagonal in mm. Runs of the cvpr25 preset add the CVPR 2025 "
        "challenge's scores: nsd_cvpr_* (NSD set to 0 where Dice ≤ 0.2) beside our NSD, and auc_dice_cvpr, "
        "auc_nsd_cvpr, auc_dice_scan_cvpr, the trapezoid over the 5 click steps after the box (range 0–4). "
        "Scan-level metrics (dice_scan, nsd_scan, hd95_scan, detection) score the final prediction against every "
        "lesion of the scan, also in lesion scenarios, where only the K largest were prompted. nsd_*: normalised "
        f"surface Dice at the run's tolerance ({tolerance}); f1_any / f1_iou10: lesion detection F1, a lesion found "
        "by any overlap / by IoU ≥ 0.1 with a predicted 26-connected component; fp_volume_ml: the total volume of "
        "the predicted 26-connected components that overlap no lesion of the scan at all (prompted or not), so a "
        "component touching a lesion adds nothing, even its voxels outside the lesion; fn_volume_ml: the total "
        "volume of the lesions that no predicted component overlaps (both from the any-overlap matching, per scan, "
        "not voxel-wise errors); fp_voxel_volume_ml / fn_voxel_volume_ml: the voxel-wise errors of the same "
        "prediction, the volume of the predicted voxels outside every lesion (a matched component's leak into the "
        "background counts) and of the lesion voxels not predicted (empty for runs written before they were "
        "recorded); auc_dice_norm: the trapezoid of the lesion Dice curve "
        "over its interactions divided by their number minus one (0–1); n_interactions: interactions actually "
        "made; mean_latency_ms: the model's add_click + predict; wall_time_s: the scenario's simulation and "
        "scoring on the case (the model's start is not in it); peak_memory_mb: the evaluating process's highest "
        "resident memory during it, sampled every 5 ms (the model, the image and nfbench together)."
    )


def _clear_previous(out: Path) -> None:
    """Remove what an earlier report wrote into ``out``'s own subfolders, so a figure or table of
    models no longer reported does not stay beside the new ones; other files are left alone."""
    for folder, patterns in (("figures", ("*.png", "*.svg")), ("tables", ("*.csv",))):
        for pattern in patterns:
            for stale in (out / folder).glob(pattern):
                stale.unlink()


def _write_tables(sheets: dict[str, pd.DataFrame], out: Path, *, notes: dict[str, str]) -> None:
    """CSV, Excel and Markdown tables; ``notes`` (by table name) precede their Markdown table."""
    folder = out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(out / "tables.xlsx", engine="openpyxl") as excel:
        for name, frame in sheets.items():
            frame.to_csv(folder / f"{name}.csv", index=False)
            frame.to_excel(excel, sheet_name=name[:31], index=False)

    def block(name: str, frame: pd.DataFrame) -> str:
        note = f"{notes[name]}\n\n" if name in notes else ""
        return f"## {name}\n\n{note}{markdown_table(frame)}"

    text = "\n\n".join(block(name, frame) for name, frame in sheets.items())
    (out / "tables.md").write_text(f"# nfbench report tables\n\n{METHODS}\n\n{text}\n", encoding="utf-8")


_POOLED_NOTE = (
    "POOLED over the test sets of each protocol that has several (test_sets names them): one two-sided Wilcoxon "
    "signed-rank test (scipy.stats.wilcoxon, zero differences dropped) over every case of every test set at once, "
    "paired by test set and case; the sets' patients differ, so each case is one independent pair and the mean "
    "difference weighs every case alike (a larger set weighs more). p_holm is Holm-corrected over these rows only, "
    "a family apart from the per-test-set comparisons. A protocol of one test set has no pooled row.")

_PROMPTED_NOTE = (
    "Lesion scenarios prompt only the K largest lesions of a case (scenario option lesions, default 20), but the "
    "scan-level metrics (dice_scan, nsd_scan, hd95_scan) and the detection counts, F1 and FP/FN volumes score "
    "every lesion of the scan. Per protocol and test set, over the finished cases with lesions: lesions per case "
    "(mean, min, max), prompted lesions per case, prompted_share (prompted lesions / all lesions) and "
    "prompted_volume_share (their volume / all lesion volume). Below a prompted_share of "
    f"{PROMPTED_SHARE_MIN:.0%} the main table and the detection figure get a caveat: their scan-level numbers "
    "then mostly measure the lesions no click was placed on.")

_FIGURES = {
    "dice_lesion_curves": "Lesion Dice after each interaction (lesion scenarios): mean over cases with its 95% "
                          "bootstrap band; one panel per protocol and test set, each up to its budget.",
    "dice_scan_curves": "Scan Dice after each interaction (global scenarios, scans without lesions included): mean "
                        "over cases with its 95% bootstrap band; sessions that stopped early keep their last value.",
    "dice_by_lesion_size": "Final lesion Dice by lesion volume (per case mean within a stratum, then mean over cases; "
                           "error bars: 95% bootstrap CI over cases, none for a stratum of one case, marked '1 case'; "
                           "under each stratum its numbers of lesions and of cases).",
    "noc": "NoC@80/85/90: interactions needed to reach the Dice level (per lesion in lesion scenarios, per scan in "
           "global scenarios; capped at the budget, so a level never reached counts as the budget: see NoF in the "
           "table), mean over cases; the y axis runs from 0 to the protocol's budget; n/a where not measured (a "
           "level above the protocol's stop_dice, at which sessions stop).",
    "detection_f1": "Lesion detection F1 of the final prediction, matched by any overlap and by IoU ≥ 0.1 (mean over "
                    "cases).",
    "latency": "Model latency per interaction (add_click + predict, ms, log scale).",
}


def _figures(tables: RunTables, folder: Path, *, dpi: int, say) -> dict[str, str]:
    colours = model_colours(sorted(set(tables.cases["model"])), known=registered_names())
    makers = {
        "dice_lesion_curves": lambda: curve_figure(tables, level="lesion", colours=colours),
        "dice_scan_curves": lambda: curve_figure(tables, level="scan", colours=colours),
        "dice_by_lesion_size": lambda: size_figure(tables, colours=colours),
        "noc": lambda: noc_figure(tables, colours=colours),
        "detection_f1": lambda: detection_figure(tables, colours=colours),
        "latency": lambda: latency_figure(tables, colours=colours),
    }
    captions = dict(_FIGURES)
    for model in sorted(colours):
        for scenario in sorted(set(tables.ok_cases["scenario"])):
            name = re.sub(r"[^A-Za-z0-9.-]+", "_", f"overlay_{model}_{scenario}").strip("_")
            makers[name] = lambda m=model, s=scenario: overlay_figure(tables, m, s)
            captions[name] = (f"{model}, {scenario}: best, median and worst case by final scan Dice, picked within each test "
                              "set (one row per set). Coronal maximum-"
                              "intensity projection along the posterior→anterior axis, head up, patient's right on the "
                              "image left, pixels drawn with their true mm aspect. Projected voxels of the final "
                              "prediction: true positive yellow, false positive vermillion, false negative blue (colours told apart with red-green colour blindness); true positives are drawn over errors behind them in the projection.")
    written = {}
    for name, make in makers.items():
        fig = make()
        if fig is not None:
            say(f"figure {name}")
            save_figure(fig, folder, name, dpi=dpi)
            written[name] = captions[name]
    return written


def write_report(runs: list[str | Path], out: str | Path, *, budget: int | None = None, quiet: bool = False,
                 dpi: int = 150, shared_cases: bool = False) -> Path:
    """Write the report of one or more run folders into ``out``; returns the path of ``report.html``.

    ``budget`` is the interaction at which lesion scenarios are summarised and compared (default 3).
    Models whose case sets differ are not compared unless ``shared_cases`` (then on the shared
    cases). Results that come from different software versions or weights are listed on stderr
    and at the top of the report.
    Raises :class:`nfbench.results.store.RunError` for a folder that is not a finished run.
    """
    def say(message: str) -> None:
        if not quiet:
            print(f"report: {message}", file=sys.stderr, flush=True)

    if budget is not None and budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    tables = load_runs(list(runs))
    lesion_budgets = tables.cases.loc[is_lesion_scenario(tables.cases["scenario"]), "budget"]
    if budget is not None and len(lesion_budgets) and budget > lesion_budgets.max():
        raise ValueError(f"--budget {budget}: the runs' lesion scenarios have at most {int(lesion_budgets.max())} "
                         "interactions")
    out = Path(out)
    if out.exists() and not out.is_dir():  # a report folder may hold other files: reports are rewritten
        raise ValueError(f"{out}: exists and is not a folder; choose another report folder")
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    say(f"{len(tables.configs)} run(s), {len(tables.cases)} case rows")
    sheets = report_tables(tables, budget=budget, shared_cases=shared_cases)
    mixed = provenance_warnings(tables)
    for warning in mixed:
        print(f"report: warning: {warning}", file=sys.stderr, flush=True)
    refused = sheets["comparisons"]["pairing"].str.startswith("not compared").sum() if len(sheets["comparisons"]) else 0
    if refused:
        print(f"report: warning: {refused} model pair(s) not compared because their case sets differ "
              "(--pair-shared-cases compares them on the shared cases)", file=sys.stderr, flush=True)
    few = few_cases_warnings(sheets["comparisons"])
    few_pooled = few_cases_warnings(sheets["comparisons_pooled"])
    caveats = unprompted_caveats(sheets["prompted_lesions"])
    for warning in [*few, *(f"pooled comparisons: {w}" for w in few_pooled), *caveats]:
        print(f"report: warning: {warning}", file=sys.stderr, flush=True)
    tolerances = sorted({float(c.get("tolerance_mm", 2.0)) for c in tables.configs})
    main_note = _main_note(budget or DEFAULT_BUDGET, " and ".join(f"{t:g} mm" for t in tolerances))
    caveat_title = (f"Mostly unprompted lesions (fewer than {PROMPTED_SHARE_MIN:.0%} of a test set's lesions "
                    "prompted; see Prompted lesions).")
    caveat = _html.warning_list(caveats, title=caveat_title) if caveats else ""
    caveat_md = "".join(f"\n\n**Caveat:** {c}." for c in caveats)
    _write_tables(sheets, out, notes={"main": main_note + caveat_md, "comparisons_pooled": _POOLED_NOTE,
                                      "prompted_lesions": _PROMPTED_NOTE + caveat_md})
    figures = _figures(tables, out / "figures", dpi=dpi, say=say)

    def fig(name: str) -> str:
        return _html.figure(out / "figures" / f"{name}.png", figures[name], anchor=name, dpi=dpi) if name in figures else ""

    written = f"written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by nfbench {nfbench.__version__}"
    sections = [
        ("summary", "Summary", [_html.table(sheets["summary"])], METHODS),
        ("curves", "Dice per interaction", [fig("dice_lesion_curves"), fig("dice_scan_curves")], ""),
        ("main", "Main table", [caveat, _html.table(sheets["main"])], main_note),
        ("comparisons", "Paired comparisons", [_html.warning_list(few, title="Few cases.") if few else "", _html.table(sheets["comparisons"])],
         "Two-sided Wilcoxon signed-rank tests (scipy.stats.wilcoxon: zero differences dropped, the exact "
         "distribution up to 50 cases without ties; the statistic is the smaller rank sum) over the cases of both "
         "models, paired by test set and case; rank_biserial is the matched-pairs effect size; p_holm is "
         "Holm-corrected over all rows. With n cases (without ties) no two-sided p can fall below 2/2^n, and Holm "
         "multiplies the smallest p of m rows by m, so significance at 0.05 needs 2/2^n < 0.05/m: fewer than 6 "
         "cases can never reach it, 6 cases (smallest p 0.031) only as the only row, 7 cases for at most 3 rows, "
         "8 for at most 6. Two models whose case sets differ (a failed case, a case run for one only) "
         "are not compared unless asked (--pair-shared-cases), since the shared cases alone can favour the model "
         "that missed the hard ones: the pairing column says which rows were compared on what."),
        ("comparisons_pooled", "Paired comparisons pooled over test sets",
         [_html.warning_list(few_pooled, title="Few cases (pooled).") if few_pooled else "",
          _html.table(sheets["comparisons_pooled"])], _POOLED_NOTE),
        ("size", "Lesion-size strata", [fig("dice_by_lesion_size"), _html.table(sheets["lesion_size"])], ""),
        ("noc", "Interactions to reach a Dice level", [fig("noc"), _html.table(sheets["noc"])],
         "NoF = lesions (lesion scenarios) or scans (global scenarios) that never reached the level within the "
         "budget, of n_lesions or n_scans. Levels above a protocol's stop_dice are empty: its sessions stop there."),
        ("detection", "Detection and latency", [caveat, fig("detection_f1"), fig("latency")], ""),
    ]
    if not sheets["prompted_lesions"].empty:
        sections.insert(3, ("prompted", "Prompted lesions", [_html.table(sheets["prompted_lesions"])],
                            _PROMPTED_NOTE))
    if not sheets["folds"].empty:
        sections.append(("folds", "Spread over folds", [_html.table(sheets["folds"])],
                         "Mean over each fold's cases, then mean and std over folds."))
    overlays = [fig(name) for name in figures if name.startswith("overlay_")]
    if overlays:
        sections.append(("overlays", "Overlays", overlays, ""))
    if not sheets["provenance"].empty:
        note = ("Where the case results come from: each distinct model, fold, weights (SHA-256, first 12 digits), "
                "software versions, device, host and study file, with its count.")
        warning = _html.warning_list(mixed) if mixed else ""
        sections.insert(1, ("provenance", "Provenance", [warning, _html.table(sheets["provenance"])], note))
    if not sheets["failed_cases"].empty:
        sections.append(("failed", "Failed cases", [_html.table(sheets["failed_cases"])], ""))
    body = [_html.section(title, *parts, anchor=anchor, note=note) for anchor, title, parts, note in sections]
    nav = [("run", "What was run"), *((anchor, title) for anchor, title, _, _ in sections)]
    page = _html.page(_html.header(config_summary(tables), written=written), body, nav=nav)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    say(f"wrote {path}")
    return path
