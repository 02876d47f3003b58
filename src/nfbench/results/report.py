"""`nfbench report`: tables (CSV, Excel, Markdown), figures (PNG, SVG) and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

import nfbench
from nfbench.results.aggregate import (
    RunTables, config_summary, curves, fold_table, load_runs, main_table, per_case_at, size_table, summary_table,
)
from nfbench.results.figures import (
    curve_figure, detection_figure, latency_figure, model_colours, noc_figure, overlay_figure, save_figure, size_figure,
)
from nfbench.results.stats import paired_comparisons

__all__ = ["write_report", "report_tables", "markdown_table"]


def markdown_table(frame: pd.DataFrame, *, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (floats rounded, NaN shown as empty)."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _comparisons(tables: RunTables, budget: int | None) -> pd.DataFrame:
    inter = tables.interactions
    parts = []
    lesion_rows, scan_rows = inter[inter["lesion_id"] > 0], inter[inter["lesion_id"] == 0]
    if len(lesion_rows):
        per_case = per_case_at(lesion_rows, "dice_lesion", budget).rename(columns={"dice_lesion": "dice"})
        parts.append(per_case.assign(metric=f"lesion Dice after {budget or 'the last'} interaction(s)"))
    if len(scan_rows):
        per_case = per_case_at(scan_rows, "dice_scan").rename(columns={"dice_scan": "dice"})
        parts.append(per_case.assign(metric="scan Dice at stop"))
    if not parts:
        return pd.DataFrame()
    return paired_comparisons(pd.concat(parts, ignore_index=True), value="dice", by=["metric", "scenario", "test_set"])


def report_tables(tables: RunTables, *, budget: int | None = None) -> dict[str, pd.DataFrame]:
    """Every table of the report, by sheet name."""
    return {
        "summary": summary_table(tables),
        "main": main_table(tables, budget=budget),
        "lesion_size": size_table(tables.lesions),
        "curves_lesion": curves(tables.interactions, level="lesion"),
        "curves_scan": curves(tables.interactions, level="scan"),
        "comparisons": _comparisons(tables, budget),
        "folds": fold_table(tables),
        "failed_cases": tables.cases[tables.cases["status"] != "ok"][["model", "scenario", "test_set", "case", "error"]],
    }


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p class='muted'>nothing to show</p>"
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="", border=0, classes="table")


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.muted{color:#666} dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem} dt{font-weight:600}
.table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0} .table th,.table td{padding:.25rem .5rem;border-bottom:1px solid #eee;text-align:right}
.table th{background:#f6f6f6} .scroll{overflow-x:auto} figure{margin:1rem 0} img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}
"""

_NOTES = (
    "Lesion metrics are averaged over each case's lesions first, then over cases; ± is the between-case "
    "standard deviation, CI the seeded percentile-bootstrap 95% interval of the mean (2000 resamples). "
    "Sessions that stopped early carry their last value forward. Paired tests: Wilcoxon signed-rank over "
    "cases both models finished, Holm-corrected over all pairs, effect size = matched-pairs rank-biserial "
    "correlation. NSD uses a 2 mm tolerance unless the run says otherwise; surfaces as in Nikolov et al. 2021."
)


def write_report(runs: list[str | Path], out: str | Path, *, budget: int | None = None, quiet: bool = False) -> Path:
    """Write the report of one or more run folders into ``out``; returns the path of ``report.html``."""
    out = Path(out)
    tables = load_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    sheets = report_tables(tables, budget=budget)
    table_dir = out / "tables"
    table_dir.mkdir(exist_ok=True)
    with pd.ExcelWriter(out / "tables.xlsx") as excel:
        for name, frame in sheets.items():
            frame.to_csv(table_dir / f"{name}.csv", index=False)
            frame.to_excel(excel, sheet_name=name[:31], index=False)
    (out / "tables.md").write_text("\n\n".join(f"## {name}\n\n{markdown_table(frame)}" for name, frame in sheets.items()) + "\n")

    colours = model_colours(sorted(set(tables.cases["model"])))
    figures: list[tuple[str, str]] = []
    candidates = [
        ("dice_lesion_curves", "Lesion Dice per interaction", curve_figure(tables, level="lesion", colours=colours)),
        ("dice_scan_curves", "Scan Dice per interaction", curve_figure(tables, level="scan", colours=colours)),
        ("dice_by_lesion_size", "Final lesion Dice by lesion volume", size_figure(tables, colours=colours)),
        ("noc", "NoC@80/85/90", noc_figure(tables, colours=colours)),
        ("detection_f1", "Detection F1", detection_figure(tables, colours=colours)),
        ("latency", "Latency per interaction", latency_figure(tables, colours=colours)),
    ]
    for model in sorted(colours):
        for scenario in sorted(set(tables.cases["scenario"])):
            candidates.append((f"overlay_{model}_{scenario}", f"Overlays: {model}, {scenario} (TP yellow, FP red, FN green)",
                               overlay_figure(tables, model, scenario)))
    figure_dir = out / "figures"
    for name, caption, fig in candidates:
        if fig is not None:
            save_figure(fig, figure_dir, name)
            figures.append((name, caption))

    what = config_summary(tables)
    header = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(', '.join(map(str, v)) if isinstance(v, list) else str(v))}</dd>"
                     for k, v in what.items() if k not in ("scenario options", "versions"))
    versions = ", ".join(f"{k} {v}" for k, v in what["versions"].items())
    options = "; ".join(f"{s}: " + ", ".join(f"{k}={v}" for k, v in o.items() if k != "name") for s, o in what["scenario options"].items())
    body = [
        f"<h1>nfbench report</h1><p class='muted'>written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by nfbench {nfbench.__version__}</p>",
        f"<h2>What was run</h2><dl>{header}<dt>scenario options</dt><dd>{html.escape(options)}</dd><dt>versions</dt><dd>{html.escape(versions)}</dd></dl>",
        f"<h2>Summary</h2><div class='scroll'>{_html_table(sheets['summary'])}</div><p class='muted'>{html.escape(_NOTES)}</p>",
    ]
    for name, caption in figures:
        body.append(_img(figure_dir / f"{name}.png", caption))
        if name == "dice_scan_curves" or (name == "dice_lesion_curves" and "dice_scan_curves" not in dict(figures)):
            body.append(f"<h2>Main table</h2><div class='scroll'>{_html_table(sheets['main'])}</div>")
            body.append(f"<h2>Paired comparisons</h2><div class='scroll'>{_html_table(sheets['comparisons'])}</div>")
    body.append(f"<h2>Lesion-size strata</h2><div class='scroll'>{_html_table(sheets['lesion_size'])}</div>")
    if not sheets["folds"].empty:
        body.append(f"<h2>Spread over folds</h2><div class='scroll'>{_html_table(sheets['folds'])}</div>")
    if not sheets["failed_cases"].empty:
        body.append(f"<h2>Failed cases</h2><div class='scroll'>{_html_table(sheets['failed_cases'])}</div>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>nfbench report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
