"""Figures: orientation and colours of the overlays, case picks, and that every figure renders."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.models.registry import registered_names
from nfbench.results.aggregate import load_runs
from nfbench.results.figures import (
    OVERLAY_COLOURS,
    curve_figure,
    detection_figure,
    latency_figure,
    model_colours,
    noc_figure,
    overlay_figure,
    overlay_rgb,
    save_figure,
    size_figure,
)
from nfbench.results.store import case_key
from tests.results._frames import case, lesion, session, tables, write_run

LC, GC = "lesion-corrective", "global-corrective"


def _preview(shape=(6, 10)) -> dict[str, np.ndarray]:
    image = np.ones(shape, np.float32)
    image[-1, -1] = 5.0  # i largest (patient's right), k largest (superior)
    empty = np.zeros(shape, bool)
    return {"image": image, "tp": empty.copy(), "fp": empty.copy(), "fn": empty.copy(),
            "spacing": np.array([0.5, 2.0], np.float32)}


def test_overlay_is_head_up_with_the_patients_right_on_the_left():
    preview = _preview()
    rgb, aspect = overlay_rgb(preview)
    assert rgb.shape == (10, 6, 3)             # rows follow k, columns follow i
    assert (rgb[0, 0] == 1.0).all()            # head-right corner: top left, brightest
    assert rgb[1:, 1:].max() < 0.5
    assert aspect == 4.0                       # a pixel is 2 mm high and 0.5 mm wide


def test_overlay_colours_and_their_order():
    preview = _preview()
    preview["tp"][0, 0] = True                 # i = 0 (patient's left), k = 0 (inferior): bottom right
    preview["fp"][1, 0] = True
    preview["fn"][2, 0] = True
    preview["fn"][0, 1] = preview["tp"][0, 1] = True  # overlapping in depth: true positive on top
    rgb, _ = overlay_rgb(preview)
    assert tuple(rgb[-1, -1]) == OVERLAY_COLOURS["true positive"]
    assert tuple(rgb[-1, -2]) == OVERLAY_COLOURS["false positive"]
    assert tuple(rgb[-1, -3]) == OVERLAY_COLOURS["false negative"]
    assert tuple(rgb[-2, -1]) == OVERLAY_COLOURS["true positive"]


def test_overlay_shows_the_best_median_and_worst_case(tmp_path):
    scores = {"c1": 0.9, "c2": 0.1, "c3": 0.5, "c4": 0.3, "c5": 0.7}
    previews = {case_key("m", GC, "t", c): _preview() for c in scores}
    run = tables([], [], [case("m", GC, "t", c, v) for c, v in scores.items()])
    folder = write_run(tmp_path / "run", run, previews=previews)
    fig = overlay_figure(load_runs([folder]), "m", GC)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split("\n")[0] for t in titles] == ["best: c1", "median: c3", "worst: c2"]
    assert "patient's right on the image left" in fig.get_suptitle()
    assert overlay_figure(load_runs([folder]), "other", GC) is None


def test_colours_are_fixed_per_model_whatever_the_order():
    assert model_colours(["b", "a"])["a"] == model_colours(["a", "b"])["a"]
    assert model_colours(["a", "b"])["a"] != model_colours(["a", "b"])["b"]


def test_a_registered_model_has_one_colour_in_every_report():
    known = registered_names()
    assert len(known) >= 13 and "region-grow" in known
    every = model_colours(known + ["my-plugin"], known=known)
    assert len(set(every.values())) == len(every)  # all distinct while the palette lasts
    for subset in (["region-grow"], ["sw-fastedit-phantom", "region-grow", "zzz"], ["sphere", "a"]):
        colours = model_colours(subset, known=known)
        assert all(colours[m] == every[m] for m in subset if m in known), subset
        assert len(set(colours.values())) == len(subset)  # an unknown model takes a colour no other has here


@pytest.fixture
def hand_made():
    rows, les, cases = [], [], []
    for model, base in (("a", 0.5), ("b", 0.7)):
        for n, name in enumerate(("c1", "c2", "c3")):
            rows += session(model, LC, "t", name, [base, base + 0.1, base + 0.2])
            rows += session(model, GC, "t", name, [base - 0.2, base], lesion_id=0, budget=4)
            les.append(lesion(model, LC, "t", name, 1, base + 0.2, volume_ml=[0.5, 5.0, 50.0][n], noc=(3, 3, 3)))
            cases += [case(model, LC, "t", name, base), case(model, GC, "t", name, base)]
    return tables(rows, les, cases)


def test_every_figure_renders_and_saves_png_and_svg(hand_made, tmp_path):
    colours = model_colours(["a", "b"])
    figures = {
        "lesion": curve_figure(hand_made, level="lesion", colours=colours),
        "scan": curve_figure(hand_made, level="scan", colours=colours),
        "size": size_figure(hand_made, colours=colours),
        "noc": noc_figure(hand_made, colours=colours),
        "detection": detection_figure(hand_made, colours=colours),
        "latency": latency_figure(hand_made, colours=colours),
    }
    lesion_axes = [ax for ax in figures["lesion"].axes if ax.get_visible()]
    assert lesion_axes[0].get_xlabel() == "interaction" and lesion_axes[0].get_ylabel() == "lesion Dice"
    np.testing.assert_allclose([line.get_ydata() for line in lesion_axes[0].get_lines()], [[0.5, 0.6, 0.7], [0.7, 0.8, 0.9]])
    assert figures["latency"].axes[0].get_ylabel() == "latency per interaction (ms)"
    for name, fig in figures.items():
        paths = save_figure(fig, tmp_path, name, dpi=30)
        assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths["svg"].read_text().lstrip().startswith("<?xml")
    assert curve_figure(tables(), level="lesion", colours=colours) is None


def test_runs_with_different_budgets_get_their_own_panel_and_end_at_their_budget():
    rows = (session("a", LC, "t", "c1", [0.2, 0.4, 0.6], budget=3, run_id="r3")
            + session("a", LC, "t", "c1", [0.2, 0.4, 0.6, 0.8, 1.0], budget=5, run_id="r5"))
    cases = [case("a", LC, "t", "c1", 0.6, budget=3, run_id="r3"), case("a", LC, "t", "c1", 1.0, budget=5, run_id="r5")]
    fig = curve_figure(tables(rows, [], cases), level="lesion", colours=model_colours(["a"]))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [[list(line.get_xdata()) for line in ax.get_lines()] for ax in panels] == [[[1, 2, 3]], [[1, 2, 3, 4, 5]]]
    np.testing.assert_allclose(panels[0].get_lines()[0].get_ydata(), [0.2, 0.4, 0.6])


# -- NoC axis and lesion-size counts (review issue 3) ----------------------------------------------------------


def _visible(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_the_noc_axis_runs_from_zero_to_the_budget():
    les, cases = [], []
    for model, noc in (("a", (1, 2, 2)), ("b", (2, 2, 3))):
        for name in ("c1", "c2"):
            les.append(lesion(model, LC, "t", name, 1, 0.9, noc=noc, budget=5))
            cases.append(case(model, LC, "t", name, 0.9, budget=5))
    ax = _visible(noc_figure(tables([], les, cases), colours=model_colours(["a", "b"])))[0]
    assert ax.get_ylim() == (0.0, 5.0)  # the original stopped just above the tallest bar (3)
    assert ax.get_ylabel() == "interactions (never reached = budget)"


def test_lesion_size_bins_show_lesions_and_cases_and_no_error_bar_for_one_case():
    # < 1 ml: three lesions in two cases; 1–10 ml: one lesion, one case; > 10 ml: none
    les = [lesion("a", LC, "t", "c1", 1, 0.6, volume_ml=0.5), lesion("a", LC, "t", "c1", 2, 0.8, volume_ml=0.5),
           lesion("a", LC, "t", "c2", 1, 0.9, volume_ml=0.5), lesion("a", LC, "t", "c1", 3, 0.7, volume_ml=5.0)]
    cases = [case("a", LC, "t", name, 0.8) for name in ("c1", "c2")]
    ax = _visible(size_figure(tables([], les, cases), colours=model_colours(["a"])))[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["< 1 ml\n3 lesions\n2 cases", "1–10 ml\n1 lesion\n1 case",
                                                            "> 10 ml\n0 lesions\n0 cases"]
    bars = {round(p.get_x() + p.get_width() / 2, 6): p.get_height() for p in ax.patches}
    assert bars[0.0] == pytest.approx(0.8) and bars[1.0] == pytest.approx(0.7)  # (0.7 + 0.9) / 2; one case
    error_x = {round(float(seg[0][0]), 6) for lines in ax.collections for seg in lines.get_segments()}
    assert 0.0 in error_x and 1.0 not in error_x  # the original drew a zero-width bar for the one case
    assert [t.get_text() for t in ax.texts] == ["1 case"]


# -- overlays per test set, a colour per model (reviewer issues 2 and 3) ----------------------------------------


def test_overlay_picks_best_median_and_worst_within_each_test_set(tmp_path):
    # pooled, the best, median and worst would all come from t1 (0.9, 0.8, 0.7) and t2's range would not show
    scores = {("t1", "a1"): 0.9, ("t1", "a2"): 0.8, ("t1", "a3"): 0.7, ("t2", "b1"): 0.3, ("t2", "b2"): 0.1}
    previews = {case_key("m", GC, t, c): _preview() for t, c in scores}
    run = tables([], [], [case("m", GC, t, c, v) for (t, c), v in scores.items()])
    fig = overlay_figure(load_runs([write_run(tmp_path / "run", run, previews=previews)]), "m", GC)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["best: a1\nt1, scan Dice 0.900", "median: a2\nt1, scan Dice 0.800", "worst: a3\nt1, scan Dice 0.700",
                      "best: b1\nt2, scan Dice 0.300", "median = worst: b2\nt2, scan Dice 0.100"]
    assert [row.get_suptitle() for row in fig.subfigs] == ["test set t1 (3 cases with a preview)",
                                                          "test set t2 (2 cases with a preview)"]


def _ciede2000(colours: list[tuple], matrix: np.ndarray | None = None) -> float:
    """The smallest CIEDE2000 difference between two of ``colours`` (sRGB), seen through ``matrix``
    (a dichromacy simulation in linear RGB) when given."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    rgb = np.asarray(colours, dtype=float)
    if matrix is not None:
        linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4) @ matrix.T
        linear = np.clip(linear, 0, 1)
        rgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    lab = rgb2lab(rgb[None])[0]
    return min(float(deltaE_ciede2000(lab[a], lab[b])) for a in range(len(lab)) for b in range(a + 1, len(lab)))


# Machado, Oliveira & Fernandes (2009), severity 1.0
DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]])
PROTANOPIA = np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]])


def test_every_model_of_a_full_report_has_a_clearly_distinct_colour():
    known = registered_names()
    models = [*known, "my-plugin", "other-plugin"]  # every registered model and two plugins: 15
    colours = list(model_colours(models, known=known).values())
    # the original's tab10 brown and tab20b's dark red-brown were 8.1 apart (two browns), 3.2 for deuteranopes
    assert _ciede2000(colours) >= 10.0
    assert _ciede2000(colours, DEUTERANOPIA) >= 9.0 and _ciede2000(colours, PROTANOPIA) >= 9.0
    siblings = model_colours(["sw-fastedit", "sw-fastedit-phantom"], known=known)
    assert _ciede2000(list(siblings.values())) >= 30.0  # neighbours in the registry differ most
