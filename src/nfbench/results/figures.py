"""Figures of a report (matplotlib, Agg): curves, size bins, NoC, detection, latency, overlays.

Each function returns a Figure; :func:`save_figure` writes it as PNG and SVG. Colours are fixed
per model across figures so a reader can follow one model through the report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from nfbench.results._html import counted
from nfbench.results.aggregate import (
    GROUP,
    PROTOCOL,
    SIZE_BINS,
    RunTables,
    curves,
    noc_table,
    per_case,
    preview_key,
    prompted_table,
    prompted_text,
    size_table,
)
from nfbench.results.schema import THRESHOLDS

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "OVERLAY_COLOURS",
    "curve_figure",
    "detection_figure",
    "latency_figure",
    "model_colours",
    "noc_figure",
    "overlay_figure",
    "overlay_rgb",
    "save_figure",
    "size_figure",
]

OVERLAY_COLOURS = {"true positive": (0.94, 0.89, 0.26), "false positive": (0.84, 0.37, 0.0), "false negative": (0.0, 0.45, 0.7)}
"""Okabe–Ito yellow, vermillion and blue: told apart with red-green colour blindness too."""
_STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 8,
          "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none"}
"""Applied per figure (never to matplotlib's global state); SVG text stays editable text."""


def _styled(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with plt.rc_context(_STYLE):
            return function(*args, **kwargs)

    return wrapper


_PALETTE = tuple(to_rgb(c) for c in (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#000000",  # Okabe–Ito
    "#66CCEE", "#AA3377",  # Paul Tol's bright cyan, purple
    "#225522", "#8C564B", "#222255",  # Tol's dark green, tab10 brown (the only brown), Tol's dark blue
    "#EE6677", "#225555",  # Tol's bright red, dark cyan
    "#F0E442", "#DDCC77",  # Okabe–Ito yellow, Tol's sand: light, so last (faint as lines on white)
))
"""Fifteen colours, every two at least 10 CIEDE2000 apart (9 under simulated deuteranopia and
protanopia, Machado 2009), where tab10 + tab20b had two browns 8 apart and pairs 1–3 apart for a
colour-blind reader. The first six (Okabe–Ito) stay apart for colour-blind readers by design; no
fifteen colours can all be. Neighbours differ most (the three dark ones never sit side by side), since
sibling models (sw-fastedit, sw-fastedit-phantom) are neighbours in the registry's sorted order."""


def model_colours(models: list[str], known: Sequence[str] = ()) -> dict[str, tuple]:
    """A colour per model, distinct within a report while the palette lasts.

    A model of ``known`` (the registry's names, in a fixed order) keeps its colour in every report,
    whichever models share it; the others take the colours left, in the order of their names.
    """
    order = list(known)
    colours = {m: _PALETTE[order.index(m) % len(_PALETTE)] for m in models if m in order}
    free = [c for c in _PALETTE if c not in colours.values()] or list(_PALETTE)
    for n, m in enumerate(sorted(set(models) - set(colours))):
        colours[m] = free[n % len(free)]
    return colours


_PANEL = [*PROTOCOL, "test_set"]
"""One panel per protocol and test set: runs of different budgets or stop targets never share one."""


def _panel_groups(table: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    return list(table.groupby(_PANEL, dropna=False))


def _title(panel: pd.DataFrame) -> str:
    return f"{panel['scenario'].iloc[0]} · {panel['test_set'].iloc[0]}"


def _panels(groups: list, *, width: float = 4.2, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    n = max(len(groups), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, constrained_layout=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _legend(fig: Figure, models: list[str], colours: dict[str, tuple], *, line: bool = False) -> None:
    """One legend for all panels, below them (a model has the same colour everywhere)."""
    handles = [Line2D([], [], color=colours[m], marker="o", ms=3, label=m) if line else Patch(color=colours[m], label=m)
               for m in models]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(models), 6), frameon=False, fontsize=9)


@_styled
def curve_figure(tables: RunTables, *, level: str, colours: dict[str, tuple]) -> Figure | None:
    """Mean Dice (over cases) per interaction with its bootstrap 95% band; one panel per protocol × test set."""
    table = curves(tables.interactions, level=level)
    if table.empty:
        return None
    groups = _panel_groups(table)
    fig, axes = _panels(groups)
    for ax, (_, panel) in zip(axes, groups):
        for model, line in panel.groupby("model"):
            ax.plot(line["interaction"], line["mean"], marker="o" if len(line) <= 10 else None, ms=3,
                    color=colours[model], label=model)
            if len(line) > 1:
                ax.fill_between(line["interaction"], line["ci_low"], line["ci_high"], color=colours[model], alpha=0.2, lw=0)
            else:  # one interaction (single-click scenarios): an error bar instead of a band
                err = np.vstack([line["mean"] - line["ci_low"], line["ci_high"] - line["mean"]]).clip(min=0)
                ax.errorbar(line["interaction"], line["mean"], yerr=np.nan_to_num(err), color=colours[model], capsize=3)
        ax.set(title=f"{_title(panel)} (n = {counted(int(panel['n_cases'].max()))})", xlabel="interaction", ylim=(0, 1.02),
               ylabel="lesion Dice" if level == "lesion" else "scan Dice")
        if panel["interaction"].max() <= 10:
            ax.set_xticks(sorted(panel["interaction"].unique()))
    _legend(fig, sorted(table["model"].unique()), colours, line=True)
    fig.suptitle(f"{'Lesion' if level == 'lesion' else 'Scan'}-level Dice per interaction (mean over cases, 95% bootstrap CI)")
    return fig


@_styled
def size_figure(tables: RunTables, *, colours: dict[str, tuple]) -> Figure | None:
    """Final lesion Dice per lesion-volume bin (mean over cases, 95% CI over cases); a bin of one
    case has no interval to draw, so it gets no error bar but a "1 case" mark."""
    table = size_table(tables.lesions)
    if table.empty:
        return None
    groups = _panel_groups(table)
    fig, axes = _panels(groups)
    bins = [b[2] for b in SIZE_BINS]
    for ax, (_, panel) in zip(axes, groups):
        models = sorted(panel["model"].unique())
        width = 0.8 / max(len(models), 1)
        for n, model in enumerate(models):
            rows = panel[panel["model"] == model].set_index("size_bin").reindex(bins)
            x = np.arange(len(bins)) + (n - (len(models) - 1) / 2) * width
            ax.bar(x, rows["mean"], width, color=colours[model], label=model)
            _case_error_bars(ax, x, rows)
        counts = panel.groupby("size_bin", observed=True)[["n_lesions", "n_cases"]].max().reindex(bins).fillna(0)
        ax.set_xticks(np.arange(len(bins)), [f"{b}\n{counted(int(c.n_lesions), 'lesion')}\n{counted(int(c.n_cases))}"
                                             for b, c in zip(bins, counts.itertuples())])
        ax.set(title=_title(panel), ylabel="final lesion Dice", ylim=(0, 1.05))
    _legend(fig, sorted(table["model"].unique()), colours)
    fig.suptitle("Final lesion Dice by lesion volume (mean over cases, 95% bootstrap CI)")
    return fig


def _case_error_bars(ax: plt.Axes, x: np.ndarray, rows: pd.DataFrame) -> None:
    """The CI of each bar over at least two cases; a bar of one case is marked instead (its
    "interval" would be a zero-width bar that reads as certainty)."""
    spread = (rows["n_cases"] >= 2).to_numpy() & rows["ci_low"].notna().to_numpy()
    err = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]]).clip(min=0)
    if spread.any():
        ax.errorbar(x[spread], rows["mean"].to_numpy()[spread], yerr=err[:, spread], fmt="none", ecolor="black",
                    elinewidth=1, capsize=2)
    single = (rows["n_cases"] == 1).to_numpy()
    for at, mean in zip(x[single], rows["mean"].to_numpy()[single]):
        ax.text(at, mean + 0.01, "1 case", rotation=90, ha="center", va="bottom", fontsize=7)


def _grouped_bars(table: pd.DataFrame, columns: list[str], labels: list[str], *, colours: dict[str, tuple],
                  ylabel: str, title: str,
                  ylim: tuple[float, float] | Callable[[pd.DataFrame], tuple[float, float]] | None = None,
                  note: Callable[[pd.DataFrame], str] | None = None) -> Figure:
    """One panel per protocol × test set; in each, one group of bars per column, one bar per model.
    ``ylim`` may be a function of the panel's rows (a limit that depends on the protocol); ``note``
    gives a second title line per panel (empty: none)."""
    groups = _panel_groups(table)
    fig, axes = _panels(groups)
    for ax, (_, panel) in zip(axes, groups):
        width = 0.8 / max(len(panel), 1)
        for n, (_, row) in enumerate(panel.iterrows()):
            x = np.arange(len(columns)) + (n - (len(panel) - 1) / 2) * width
            values = row[columns].astype(float).to_numpy()
            ax.bar(x, values, width, color=colours[row["model"]], label=row["model"])
            for at in x[np.isnan(values)]:  # a missing bar must not read as zero
                ax.text(at, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=8, color=colours[row["model"]])
        ax.set_xticks(np.arange(len(columns)), labels)
        extra = note(panel) if note is not None else ""
        ax.set(title=f"{_title(panel)}\n{extra}" if extra else _title(panel), ylabel=ylabel)
        if ylim is not None:
            ax.set_ylim(*(ylim(panel) if callable(ylim) else ylim))
    _legend(fig, sorted(table["model"].unique()), colours)
    fig.suptitle(title)
    return fig


@_styled
def noc_figure(tables: RunTables, *, colours: dict[str, tuple]) -> Figure | None:
    """Mean NoC@80/85/90 per model (lower is better), one panel per protocol × test set; lesion
    scenarios count interactions per lesion, global scenarios per scan. The y axis runs from 0 to
    the protocol's budget, the most NoC can be, so differences are not blown up."""
    table = noc_table(tables)
    if table.empty:
        return None
    columns = [f"noc_{round(x * 100)}" for x in THRESHOLDS]
    return _grouped_bars(table, columns, [f"NoC@{round(x * 100)}" for x in THRESHOLDS], colours=colours,
                         ylabel="interactions (never reached = budget)",
                         ylim=lambda panel: (0.0, float(panel["budget"].iloc[0])),
                         title="Interactions needed to reach a Dice of 0.80 / 0.85 / 0.90 (mean over cases; lower is better)")


@_styled
def detection_figure(tables: RunTables, *, colours: dict[str, tuple]) -> Figure | None:
    """Detection F1 per case (any overlap and IoU ≥ 0.1), mean over cases per model. A lesion
    scenario's panel says how many of the lesions were prompted: F1 scores them all."""
    cases = tables.ok_cases
    if cases.empty:
        return None
    columns = ["f1_any", "f1_iou10"]
    means = per_case(cases, columns).groupby(GROUP, dropna=False)[columns].mean().reset_index()
    prompted = prompted_table(tables).set_index(_PANEL)

    def note(panel: pd.DataFrame) -> str:
        key = tuple(panel[_PANEL].iloc[0])
        if key not in prompted.index:
            return ""
        return prompted_text(prompted.loc[key])

    return _grouped_bars(means, columns, ["any overlap", "IoU ≥ 0.1"], colours=colours, ylabel="detection F1", ylim=(0, 1.05),
                         title="Lesion detection F1 of the final prediction (mean over cases; every lesion of the scan, "
                               "prompted or not)", note=note)


@_styled
def latency_figure(tables: RunTables, *, colours: dict[str, tuple]) -> Figure | None:
    """Distribution of model latency per interaction (ms, log scale), one box per model × protocol."""
    inter = tables.interactions
    inter = inter[~inter["carried_forward"].astype(bool)].dropna(subset=["latency_ms"])
    if inter.empty:
        return None
    groups = list(inter.groupby(["model", *PROTOCOL], dropna=False))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(groups)), 3.6), constrained_layout=True)
    box = ax.boxplot([rows["latency_ms"].to_numpy() for _, rows in groups], patch_artist=True, showfliers=True,
                     flierprops={"markersize": 2})
    for patch, ((model, *_), _) in zip(box["boxes"], groups):
        patch.set_facecolor(colours[model])
        patch.set_alpha(0.6)
    labels = [f"{model}\n{scenario}".replace(" (", "\n(") for (model, scenario, *_), _ in groups]  # the protocol on its own line
    ax.set_xticks(range(1, len(groups) + 1), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set(ylabel="latency per interaction (ms)", title="Model latency per interaction (add_click + predict; carried-forward rows excluded)")
    return fig


def _display(array: np.ndarray) -> np.ndarray:
    """[i, k] (i → patient's right, k → superior) to [row, column] with the head up (row 0 = largest
    k) and the patient's right on the image left (column 0 = largest i), the radiological view."""
    return np.flip(array.T, axis=(0, 1))


@_styled
def overlay_figure(tables: RunTables, model: str, scenario: str) -> Figure | None:
    """Coronal MIP with true positives (yellow), false positives (vermillion) and false negatives (blue)
    for the best, median and worst case of a model (by final scan Dice), as in the paper's figure 2:
    one row per test set, each picked within its set (pooled picks showed one set's range only).

    The previews are projections of the 3-D TP / FP / FN voxels, so a voxel hidden behind another
    class in depth still shows; true positives are drawn last (on top).
    """
    cases = tables.ok_cases
    cases = cases[(cases["model"] == model) & (cases["scenario"] == scenario)].dropna(subset=["dice_scan"])
    keys = [preview_key(model, scenario, t, c, f, s)
            for t, c, f, s in zip(cases["test_set"], cases["case"], cases["fold"], cases["seed"])]
    cases = cases[[k in tables.previews for k in keys]]
    if cases.empty:
        return None
    sets = sorted(cases["test_set"].unique())
    fig = plt.figure(figsize=(9.0, 6.4 * len(sets) + 0.8), layout="constrained")
    rows = fig.subfigures(len(sets), 1, squeeze=False)[:, 0]
    for row, test_set in zip(rows, sets):
        ranked = cases[cases["test_set"] == test_set].sort_values(["dice_scan", "case"], ascending=[False, True],
                                                                   ignore_index=True)
        row.suptitle(f"test set {test_set} ({counted(len(ranked))} with a preview)", fontsize=10, fontweight="bold")
        for ax, (label, pick) in zip(row.subplots(1, 3), _picks(ranked)):
            ax.axis("off")
            if pick is None:
                continue
            key = preview_key(model, scenario, pick["test_set"], pick["case"], pick["fold"], pick["seed"])
            with np.load(tables.previews[key]) as preview:
                rgb, aspect = overlay_rgb(preview)
            ax.imshow(rgb, aspect=aspect, interpolation="nearest")
            fold = "" if pd.isna(pick["fold"]) else f", fold {int(pick['fold'])}"
            ax.set_title(f"{label}: {pick['case']}\n{pick['test_set']}{fold}, scan Dice {pick['dice_scan']:.3f}", fontsize=9)
    fig.legend(handles=[Patch(color=c, label=n) for n, c in OVERLAY_COLOURS.items()], loc="outside lower center",
               ncol=3, frameon=False)
    fig.suptitle(f"{model} · {scenario}: coronal maximum-intensity projection, best / median / worst per test set\n"
                 "(head up, patient's right on the image left)")
    return fig


def _picks(ranked: pd.DataFrame) -> list[tuple[str, pd.Series | None]]:
    """Best, median and worst of cases ranked best first; a case that is several of them (a set of one
    or two cases) is shown once, named by all (``"best = median = worst"``), and the panels left are None."""
    named: dict[int, list[str]] = {}
    for label, at in (("best", 0), ("median", len(ranked) // 2), ("worst", len(ranked) - 1)):
        named.setdefault(at, []).append(label)
    picks = [(" = ".join(labels), ranked.iloc[at]) for at, labels in named.items()]
    return picks + [("", None)] * (3 - len(picks))


def overlay_rgb(preview: Mapping[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """The RGB picture of one preview (grey MIP, FN blue, FP vermillion, TP yellow on top) in display
    orientation, and the pixel aspect (height / width) for ``imshow``."""
    image = _display(np.asarray(preview["image"], dtype=float))
    body = image[image > 0]
    lo, hi = np.percentile(body, [1, 99.5]) if body.size else (0.0, 1.0)
    rgb = np.repeat(np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)[..., None], 3, axis=2)
    for key, name in (("fn", "false negative"), ("fp", "false positive"), ("tp", "true positive")):
        rgb[_display(np.asarray(preview[key], dtype=bool))] = OVERLAY_COLOURS[name]
    spacing_i, spacing_k = (float(v) for v in preview["spacing"])
    return rgb, spacing_k / spacing_i


@_styled
def save_figure(fig: Figure, folder: Path, name: str, *, dpi: int = 110) -> dict[str, Path]:
    """Write ``name.png`` and ``name.svg``; returns both paths. The bounds grow to hold a title or
    legend wider than the panels (one narrow panel: a run of one test set and scenario)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"{name}.{ext}" for ext in ("png", "svg")}
    fig.savefig(paths["png"], dpi=dpi, bbox_inches="tight")
    fig.set_layout_engine("none")  # keep the layout just computed: the SVG needs no second pass
    fig.savefig(paths["svg"], bbox_inches="tight")
    plt.close(fig)
    return paths
