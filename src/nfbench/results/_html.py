"""The HTML page of a report: one self-contained file (inline CSS, figures as base64 PNG)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

__all__ = ["counted", "figure", "header", "markdown_table", "page", "section", "table"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1250px;
     color:#222;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2.4rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
h3{margin-top:1.4rem;font-size:1.05rem}
.muted{color:#666} .note{font-size:.85rem;color:#444;max-width:60rem} .warning{background:#fff4e5;border-left:4px solid #e69500;padding:.4rem .8rem;max-width:60rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.15rem 1rem;font-size:.9rem} dt{font-weight:600}
dd{margin:0}
.table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}
.table th,.table td{padding:.2rem .5rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
.table th{background:#f6f6f6;position:sticky;top:0}
.table td:nth-child(-n+3),.table th:nth-child(-n+3){text-align:left}
.scroll{overflow-x:auto;max-height:32rem;overflow-y:auto} figure{margin:1rem 0}
img{max-width:100%;height:auto;border:1px solid #eee} figcaption{font-size:.85rem;color:#555;max-width:60rem}
nav a{margin-right:.8rem}
"""


def counted(n: int, what: str = "case") -> str:
    """``"1 case"``, ``"6 cases"``: a count in the report's words and figures."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _is_p(column: object) -> bool:
    """p-value columns (``p_value``, ``p_holm``): shown with significant digits, since 0.0005 rounded
    to 3 decimals reads as 0.000 and a pooled test's p is often that small."""
    return str(column).startswith("p_")


def _float(value: float, column: object, digits: int) -> str:
    return f"{value:.{digits}g}" if _is_p(column) else f"{value:.{digits}f}"


def markdown_table(frame: pd.DataFrame, *, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (floats rounded, p-values to ``digits`` significant digits,
    missing values shown empty, ``|`` escaped)."""
    def cell(value: object, column: object = "") -> str:
        if pd.api.types.is_scalar(value) and pd.isna(value):  # NaN, None, pd.NA: empty, as in the HTML
            return ""
        if isinstance(value, float):
            return _float(value, column, digits)
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v, c) for v, c in zip(row, frame.columns)) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def figure(path: Path, caption: str, *, anchor: str, dpi: float) -> str:
    """A figure with its PNG inlined as base64 (no external resource) and a caption.

    The image is shown at the figure's size in inches (96 CSS pixels each, at most the page width),
    so the page looks the same whatever the PNG's resolution.
    """
    raw = path.read_bytes()
    width = int.from_bytes(raw[16:20], "big") * 96.0 / dpi  # IHDR width of the PNG
    data = base64.b64encode(raw).decode("ascii")
    text = html.escape(caption)
    return (f"<figure id='{html.escape(anchor)}'><img alt='{text}' style='width:{width:.0f}px' "
            f"src='data:image/png;base64,{data}'><figcaption>{text}</figcaption></figure>")


def table(frame: pd.DataFrame, *, digits: int = 3) -> str:
    """A scrollable HTML table; floats rounded (p-values to ``digits`` significant digits), missing
    values shown empty (pandas writes ``<NA>`` for those of nullable columns such as counts, whatever
    ``na_rep`` says)."""
    if frame.empty:
        return "<p class='muted'>nothing to show</p>"
    nullable = [c for c in frame.columns if isinstance(frame[c].dtype, pd.api.extensions.ExtensionDtype)]
    frame = frame.assign(**{c: frame[c].astype(object).where(frame[c].notna(), "") for c in nullable})
    p_values = {c: (lambda v, c=c: "" if pd.isna(v) else _float(v, c, digits))
                for c in frame.columns if _is_p(c) and pd.api.types.is_float_dtype(frame[c])}
    body = frame.to_html(index=False, float_format=lambda v: f"{v:.{digits}f}", formatters=p_values, na_rep="",
                         border=0, classes="table")
    return f"<div class='scroll'>{body}</div>"


def warning_list(items: list[str], *, title: str = "Mixed provenance.") -> str:
    """A highlighted list of warnings (by default: results of one report that do not agree in provenance)."""
    entries = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    return f"<div class='warning'><strong>{html.escape(title)}</strong><ul>{entries}</ul></div>"


def section(title: str, *parts: str, anchor: str, note: str = "") -> str:
    text = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return f"<section id='{html.escape(anchor)}'><h2>{html.escape(title)}</h2>{text}{''.join(parts)}</section>"


def header(what: dict[str, object], *, written: str) -> str:
    """Title and the description of what was run (a definition list)."""
    rows = []
    for key, value in what.items():
        if isinstance(value, dict):  # options of each run and scenario or model: one line each
            entries = [html.escape(f"{k}: {_options(v)}") for k, v in value.items()]
            text = ("<br>" if any(isinstance(v, dict) for v in value.values()) else "; ").join(entries)
        elif isinstance(value, (list, tuple)):
            text = html.escape(", ".join(map(str, value)))
        else:
            text = html.escape(str(value))
        rows.append(f"<dt>{html.escape(key)}</dt><dd>{text}</dd>")
    return (f"<h1>nfbench report</h1><p class='muted'>{html.escape(written)}</p>"
            f"<section id='run'><h3>What was run</h3><dl>{''.join(rows)}</dl></section>")


def _options(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if k != "name") or "defaults"
    return str(value)


def page(top: str, body: list[str], *, nav: list[tuple[str, str]]) -> str:
    """The whole document: ``top`` (title and run description), a table of contents, the sections."""
    links = "".join(f"<a href='#{html.escape(a)}'>{html.escape(t)}</a>" for a, t in nav)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>nfbench report</title>"
            f"<style>{_STYLE}</style></head><body>{top}<nav>{links}</nav>{''.join(body)}</body></html>")
