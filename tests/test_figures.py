"""Figures: every figure from small tables, at both sizes, as valid PNG and PDF files of the
requested size; clear errors for missing columns; skipped figures without data; the CLI."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import schema
from bench.cli import main as bench_main
from bench.cli import paper as paper_cli
from bench.registry import current_registry, use_registry
from bench.report import theme
from bench.report.figures import FIGURES, PAGE_HEIGHT_IN, draw, make_figures, pages
from bench.report.figures.axes import FLOOR_FACTOR, log_breaks, log_labels
from bench.report.figures.common import biased_on
from bench.report.figures.efficiency import SLOT_HALF
from bench.report.figures.output import natural_height
from bench.report.theme import PALETTE, SIZES
from bench.sweep.run import run_sweep
from estimators import ESTIMATORS
from problems import PROBLEMS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: an estimator that a plugin would register: not in the registry
PLUGIN = "my_plugin_estimator"


def _cells() -> pd.DataFrame:
    """A synthetic cells table with the schema of cells.parquet: a K sweep of three
    estimators on two problems and one with a reference truth, a tau sweep of
    Gumbel-Softmax, and a plugin estimator with zero variance."""
    rows = []
    configs = [(p, e, {}, k) for p in ("gaussian_quadratic", "bernoulli_toy")
               for e in ("reinforce", "reinforce_loo") for k in (2, 4, 16)]
    configs += [("gaussian_quadratic", "reparam", {}, k) for k in (2, 4, 16)]
    configs += [("gan_continuous", e, {}, k) for e in ("reinforce", "reparam") for k in (2, 16)]
    configs += [("bernoulli_toy", "gumbel_softmax", {"tau": t}, k)
                for t in (0.1, 0.5, 1.0, 2.0) for k in ((2, 4, 16) if t == 1.0 else (4,))]
    configs += [("bernoulli_toy", PLUGIN, {}, k) for k in (2, 4, 16)]
    for i, (problem, estimator, options, k) in enumerate(configs):
        unbiased = ESTIMATORS[estimator].unbiased if estimator in ESTIMATORS else True
        variance = 0.0 if estimator == PLUGIN else (3.0 + i % 3) / k
        bias = 0.0 if unbiased else 0.05 * options.get("tau", 1.0)
        rows.append({
            "cell_key": f"{i:016x}", "run_id": "synthetic", "problem": problem,
            "problem_options": json.dumps({}), "estimator": estimator,
            "estimator_options": json.dumps(options or (
                {"tau": 1.0} if "tau" in getattr(ESTIMATORS.get(estimator), "options", {})
                else {})),
            "n_samples": k, "n_repeats": 100, "seed": 0, "device": "cpu", "dtype": "float32",
            "status": "ok", "unbiased": unbiased,
            "truth": "reference" if problem == "gan_continuous" else "closed_form",
            "variance_trace": variance, "variance_trace_ci_low": 0.8 * variance,
            "variance_trace_ci_high": 1.2 * variance,
            "bias_l2": bias + 0.01, "bias_l2_ci_low": bias + 0.005,
            "bias_l2_ci_high": bias + 0.02, "bias_l2_noise_floor": np.sqrt(variance / 100),
            "mse": bias**2 + variance + 1e-6, "mse_ci_low": 0.8 * variance + 1e-7,
            "mse_ci_high": 1.2 * variance + bias**2 + 2e-6,
            "time_per_estimate_s": 1e-4 * k * (1 + i % 2), "time_iqr_s": 3e-5 * k,
            "cost_evals": k * (2 if estimator == "reinforce_loo" else 1),
        })
    return schema.table(rows, schema.CELLS).to_pandas()


def _train() -> pd.DataFrame:
    """A synthetic train table with the columns and metric names of bench.training.train."""
    rows = []
    for j, estimator in enumerate(("reinforce", "reinforce_loo", "gumbel_softmax")):
        for step in range(0, 101, 20):
            wall = step * 0.01 * (1 + j)
            for metric, value in (("test_nelbo", 100 - step / (10 + j)),
                                  ("train_loss", 101 - step / (10 + j)),
                                  ("variance_trace", 10.0 ** (3 - j) * (1 + step / 100))):
                rows.append({
                    "run_id": "synthetic", "problem": "bernoulli_vae",
                    "problem_options": "{}", "estimator": estimator,
                    "estimator_options": json.dumps({"tau": 1.0} if j == 2 else {}),
                    "n_samples": 2, "step": step, "wall_s": wall, "metric": metric,
                    "value": value,
                })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return {"cells": _cells(), "train": _train()}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def pdf_size(path: Path) -> tuple[float, float]:
    data = path.read_bytes()
    assert data[:5] == b"%PDF-", f"{path} is not a PDF"
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert box is not None, f"{path} has no MediaBox"
    return float(box.group(1)), float(box.group(2))


@pytest.fixture
def low_dpi(monkeypatch):
    """Figures at 40 dpi: the same layout, drawn in a fraction of the time."""
    monkeypatch.setattr(theme, "DPI", 40)
    return 40


def test_every_figure_as_png_of_the_requested_size(tables, tmp_path, low_dpi):
    size = "icml-column"  # the narrowest: where text is likeliest not to fit
    written, notes = make_figures(tables, tmp_path, ["png"], size)
    assert notes == []
    assert sorted(p.stem for p in written) == sorted(FIGURES)
    for path in written:
        _, width, height = draw(path.stem, tables[FIGURES[path.stem].table], size)
        assert width == SIZES[size].width_in
        assert png_size(path) == (round(width * low_dpi), round(height * low_dpi))


@pytest.mark.slow
@pytest.mark.parametrize("size", ["neurips", "icml-page"])
def test_every_figure_as_png_at_the_wider_sizes(tables, tmp_path, size, low_dpi):
    written, notes = make_figures(tables, tmp_path, ["png"], size)
    assert notes == [] and len(written) == len(FIGURES)
    for path in written:
        _, width, height = draw(path.stem, tables[FIGURES[path.stem].table], size)
        assert png_size(path) == (round(width * low_dpi), round(height * low_dpi))


def test_the_paper_theme_renders_at_300_dpi():
    assert theme.DPI == 300 and theme.paper_theme().themeables["dpi"].properties["value"] == 300


def test_pdf_output_has_the_requested_size(tables, tmp_path, low_dpi):
    written, _ = make_figures(tables, tmp_path, ["pdf"], "single",
                              names=["variance_vs_samples", "training"])
    for path in written:
        _, width, height = draw(path.stem, tables[FIGURES[path.stem].table], "single")
        assert pdf_size(path) == pytest.approx((width * 72, height * 72), abs=0.5)


@pytest.mark.parametrize("name", list(FIGURES))
def test_missing_columns_name_the_figure_and_the_columns(tables, name):
    figure = FIGURES[name]
    dropped = figure.columns[-1]
    table = tables[figure.table].drop(columns=[dropped])
    with pytest.raises(ValueError, match=rf"figure '{name}' needs columns \['{dropped}'\]"):
        draw(name, table)


def test_figures_without_data_are_skipped_with_a_note(tables, tmp_path, low_dpi):
    single_k = tables["cells"][tables["cells"]["n_samples"] == 4]
    written, notes = make_figures({"cells": single_k}, tmp_path, ["png"])
    assert {p.stem for p in written} == {"tau_tradeoff", "efficiency", "efficiency_evals",
                                         "overview"}
    assert any(n.startswith("variance_vs_samples: skipped") for n in notes)
    assert any(n.startswith("training: skipped, no train.parquet") for n in notes)
    with pytest.raises(ValueError, match=r"variance_vs_samples.*more than one K"):
        make_figures({"cells": single_k}, tmp_path, ["png"], names=["variance_vs_samples"])


def _layer(plot, geom: str, column: str | None = None) -> pd.DataFrame:
    """The data of the first layer of ``plot`` drawn with ``geom`` (and, if given, holding
    ``column``)."""
    for layer in plot.layers:
        data = getattr(layer, "_data", None)
        data = data if isinstance(data, pd.DataFrame) else plot.data
        if type(layer.geom).__name__ == geom and (column is None or column in data.columns):
            return data
    raise AssertionError(f"no {geom} layer with {column}")


def _style_clashes(styles: dict[str, theme.Style]) -> list[tuple[str, str]]:
    """Pairs of estimators drawn alike (same colour and marker)."""
    seen: dict[tuple[str, str], str] = {}
    clashes = []
    for name, style in styles.items():
        key = (style.colour, style.shape)
        if key in seen:
            clashes.append((seen[key], name))
        seen.setdefault(key, name)
    return clashes


def test_every_builtin_declares_its_own_distinct_style():
    """Each registered estimator class declares its (colour, marker) itself (not inherited),
    from the suite's palette and markers, and no two share one."""
    styles = theme.estimator_styles()
    assert set(styles) == set(ESTIMATORS)
    for name, cls in ESTIMATORS.items():
        assert "style" in cls.__dict__, f"{name} declares no style of its own"
        assert theme.declared_style(name, cls) == styles[name]
    assert _style_clashes(styles) == []
    assert styles["reinforce"] == theme.Style(PALETTE[0], "o")  # as before the declarations


def test_a_style_clash_between_builtins_is_caught(monkeypatch):
    """The broken twin: a built-in declaring another's pair is reported by the same check."""
    monkeypatch.setattr(ESTIMATORS["reinforce_loo"], "style", ESTIMATORS["reinforce"].style)
    assert _style_clashes(theme.estimator_styles()) == [("reinforce", "reinforce_loo")]
    monkeypatch.setattr(ESTIMATORS["reinforce_loo"], "style", ("teal", "o"))
    with pytest.raises(ValueError, match=r"reinforce_loo.*expected a colour of blue"):
        theme.estimator_styles()


def test_plugins_get_a_colour_and_marker_no_builtin_has():
    """A plugin, even a subclass of a built-in (which inherits its ``style``), is drawn with a
    colour and a marker of the plugin set; plugins differ from each other."""

    class TauTwice(ESTIMATORS["gumbel_softmax"]):
        name = "tau_twice"

    TauTwice.__module__ = "my_plugin"
    plugins = [f"plugin_{i}" for i in range(20)]
    with use_registry(current_registry().with_class(TauTwice)):
        styles = theme.estimator_styles(plugins)
    builtin_colours = {styles[n].colour for n in ESTIMATORS}
    for name in ["tau_twice", *plugins]:
        assert styles[name].colour not in builtin_colours, name
        assert styles[name].colour in theme.PLUGIN_COLOURS
        assert styles[name].shape in theme.PLUGIN_SHAPES and styles[name].shape not in theme.SHAPES
    assert styles["tau_twice"] != styles["gumbel_softmax"]
    assert _style_clashes(styles) == []
    # a plugin never moves a built-in's style: the styles of the built-ins alone
    assert {n: styles[n] for n in ESTIMATORS} == theme.estimator_styles()


def test_log_labels_are_distinct_for_any_range():
    for low, high in [(6.5e-4, 8.6e-4), (7e-4, 8e-4), (1.2e-5, 3e-5), (0.11, 0.19),
                      (3e3, 4e4), (1e-9, 1e3), (2e-7, 2.6e-7)]:
        breaks = log_breaks([low, high])
        labels = log_labels(breaks)
        assert len(breaks) >= 1 and len(set(labels)) == len(labels), (low, high, labels)
    assert log_labels([6.5e-4, 7e-4, 7.5e-4]) == ["6.5e-4", "7e-4", "7.5e-4"]
    assert log_labels([1e-5, 3e-5]) == ["1e-5", "3e-5"]


def _floored(plot) -> pd.DataFrame:
    """The rows drawn on the floor, from every layer of ``plot``."""
    parts = [d for layer in plot.layers
             for d in [layer._data if isinstance(layer._data, pd.DataFrame) else plot.data]
             if "at_floor" in d.columns]
    rows = pd.concat(parts)
    return rows[rows["at_floor"].astype(bool)].drop_duplicates(["cell_key"])


def test_variance_figure_ticks_every_k_guides_1_over_k_and_shows_zero_variance(tables):
    plot, _, _ = draw("variance_vs_samples", tables["cells"])
    scale = next(s for s in plot.scales if "x" in s.aesthetics)
    assert scale.breaks([1.9, 16.5]) == [2.0, 4.0, 16.0]
    guide = _layer(plot, "geom_line", "guide")
    for _, rows in guide.groupby("panel", observed=True):  # slope -1 on log-log axes
        slope = np.polyfit(np.log(rows["n_samples"]), np.log(rows["guide"]), 1)[0]
        assert slope == pytest.approx(-1.0)
    zero = _floored(plot)
    assert set(zero["estimator"]) == {PLUGIN} and len(zero) == 3
    shown = plot.data
    toy = shown[shown["panel"] == "bernoulli_toy"]["variance_trace"]
    assert (zero["shown"] < toy.min()).all() and (zero["shown"] > 0).all()
    assert PLUGIN in plot.labels.caption and "dotted floor" in plot.labels.caption
    # series at the same K are spread so that none hides another
    at_4 = shown[(shown["panel"] == "gaussian_quadratic") & (shown["n_samples"] == 4)]
    assert at_4["x_dodged"].nunique() == len(at_4) == 3
    assert np.allclose(at_4["x_dodged"] / 4, 1, atol=0.2)


def test_variance_at_rounding_level_is_drawn_as_zero(tables):
    """A variance of 1e-20 with an SNR of 1e8 in float32 is rounding (an exact estimator):
    on the floor, not stretching the axis to 1e-20; a small variance that is resolved
    (SNR 100), or the same SNR in float64, stays a point of its own."""
    cells = tables["cells"].copy()
    plugin = cells["estimator"] == PLUGIN
    cells.loc[plugin, ["variance_trace", "snr"]] = [1e-20, 1e8]
    assert set(_floored(draw("variance_vs_samples", cells)[0])["estimator"]) == {PLUGIN}
    for column, value in (("snr", 100.0), ("dtype", "float64")):
        changed = cells.copy()
        changed.loc[plugin, column] = value
        plot, _, _ = draw("variance_vs_samples", changed)
        assert _floored(plot).empty
        assert (plot.data["estimator"] == PLUGIN).sum() == 3


def _decades(values: pd.Series) -> float:
    values = values[values > 0]
    return float(np.log10(values.max() / values.min()))


@pytest.mark.parametrize("name", ["overview", "efficiency", "efficiency_evals"])
def test_rounding_level_mse_sits_on_a_marked_floor(tables, name):
    """An MSE of 1e-17 (DisARM on one bit) with a gradient of norm 1 in float32 is rounding:
    drawn on the floor, FLOOR_FACTOR below the panel's smallest real value or interval end,
    so the axis spans the real values' decades, not 17; the caption names it. The twin: an
    MSE of 1e-6 is a real value and stays where it is, on an axis that then spans more."""
    cells = tables["cells"].assign(truth_l2=1.0)
    plugin = cells["estimator"] == PLUGIN
    cells.loc[plugin, ["mse", "mse_ci_low", "mse_ci_high"]] = [1e-17, 1e-18, 1e-16]
    plot, _, _ = draw(name, cells)
    floored = _floored(plot)
    assert set(floored["estimator"]) == {PLUGIN}
    toy = plot.data[(plot.data["panel"] == "bernoulli_toy") & ~plot.data["at_floor"]]
    lowest = min(toy["mse"].min(), toy["low"].min())
    assert np.allclose(floored["shown"], lowest / FLOOR_FACTOR)
    assert _decades(pd.concat([toy["high"], floored["shown"]])) < 5
    assert "dotted floor" in plot.labels.caption and PLUGIN in plot.labels.caption
    _layer(plot, "geom_hline", "floor")
    cells.loc[plugin, ["mse", "mse_ci_low", "mse_ci_high"]] = [1e-6, 5e-7, 2e-6]
    real, _, _ = draw(name, cells)
    assert _floored(real).empty and "dotted floor" not in real.labels.caption


def test_tau_figure_does_not_join_unresolved_bias(tables):
    cells = tables["cells"].copy()
    resolved = (cells["estimator"] == "gumbel_softmax") & cells["estimator_options"].str.contains(
        '"tau": 2.0')
    cells.loc[resolved, ["bias_l2_ci_low", "bias_l2_noise_floor"]] = [0.5, 0.01]
    plot, _, _ = draw("tau_tradeoff", cells)
    bias = "bias ||E[g] − ∇L||"
    joined = plot.data[plot.data["quantity"] == bias]
    assert joined["tau"].tolist() == [2.0]  # only the resolved point is on a curve
    points = pd.concat(d for layer in plot.layers if type(layer.geom).__name__ == "geom_point"
                       for d in [layer._data if isinstance(layer._data, pd.DataFrame)
                                 else plot.data])
    hollow = points[(points["quantity"] == bias) & ~points["resolved"].astype(bool)]
    assert sorted(hollow["tau"]) == [0.1, 0.5, 1.0]
    assert "not resolved" in plot.labels.caption


def _tau_points(plot, quantity: str) -> pd.DataFrame:
    """The points of every point layer of a tau figure, for ``quantity``."""
    points = pd.concat(d for layer in plot.layers if type(layer.geom).__name__ == "geom_point"
                       for d in [layer._data if isinstance(layer._data, pd.DataFrame)
                                 else plot.data])
    return points[points["quantity"] == quantity]


def test_tau_bias_is_resolved_by_the_squared_bias_interval_not_the_norms(tables):
    """The norm's bootstrap interval lies above the noise floor for an unbiased estimator
    whose norm is the floor plus noise (reinmax at tau = 1 on categorical_vae: 0.038, its
    interval from 0.0384, floor 0.034, p = 1); only an interval of the squared bias that
    excludes 0 resolves a bias."""
    cells = tables["cells"].copy()
    swept = cells["estimator"] == "gumbel_softmax"
    cells.loc[swept, ["bias_l2_ci_low", "bias_l2_noise_floor"]] = [0.5, 0.01]
    bias = "bias ||E[g] − ∇L||"
    # the broken twin: a table without the squared bias's interval falls back to the norm's
    # rule, which calls every point resolved
    fallback, _, _ = draw("tau_tradeoff", cells)
    assert _tau_points(fallback, bias)["resolved"].astype(bool).all()
    cells.loc[swept, "bias_sq_ci_low"] = -1e-4
    cells.loc[swept & cells["estimator_options"].str.contains('"tau": 2.0'),
              "bias_sq_ci_low"] = 1e-4
    plot, _, _ = draw("tau_tradeoff", cells)
    points = _tau_points(plot, bias)
    assert sorted(points.loc[points["resolved"].astype(bool), "tau"]) == [2.0]
    assert sorted(points.loc[~points["resolved"].astype(bool), "tau"]) == [0.1, 0.5, 1.0]
    assert "contains 0" in plot.labels.caption


def test_tau_figure_draws_each_estimator_at_its_default_other_options(tables):
    """gst swept over tau at gap 1 (its default) and gap p: one curve, at gap 1, not a
    zigzag through both (they share a colour and marker)."""
    cells = tables["cells"]
    sweep = cells[(cells["estimator"] == "gumbel_softmax") & (cells["n_samples"] == 4)]
    variants = [sweep.assign(estimator="gst", estimator_options=[
        json.dumps({"gap": gap, "tau": json.loads(o)["tau"]}) for o in sweep["estimator_options"]],
        bias_l2=sweep["bias_l2"] * factor) for gap, factor in (("1", 1.0), ("p", 3.0))]
    plot, _, _ = draw("tau_tradeoff", pd.concat([cells, *variants], ignore_index=True))
    gst = plot.data[plot.data["estimator"] == "gst"]
    assert not gst.empty
    assert set(gst["others"]) == {json.dumps({"gap": "1"})}
    assert gst.groupby(["quantity", "tau"], observed=True).size().max() == 1


def test_efficiency_plots_mse_against_time(tables):
    plot, _, _ = draw("efficiency", tables["cells"])
    assert plot.mapping["y"] == "shown"
    data = plot.data
    assert np.allclose(data["xpos"], data["time_per_estimate_s"] * 1e3)
    bars = _layer(plot, "geom_segment")  # interquartile range of the time as horizontal bars
    assert np.allclose((bars["cost_high"] - bars["cost_low"]) / 1e3, bars["time_iqr_s"])
    assert "hollow: biased" in plot.labels.caption


def test_efficiency_evals_shows_integer_counts_in_slots(tables):
    """Every point sits in the slot of its own count, labelled with that integer (never
    between two counts as a dodge on a numeric axis puts it); estimators sharing a count
    are side by side within the slot."""
    cells = tables["cells"].copy()
    cells["cost_evals"] = cells["n_samples"] * 5  # 10, 20, 80: shared by every estimator
    plot, _, _ = draw("efficiency_evals", cells)
    scale = next(s for s in plot.scales if "x" in s.aesthetics)
    data = plot.data
    centres = data["xpos"].round()
    assert ((data["xpos"] - centres).abs() <= SLOT_HALF + 1e-9).all()
    for _, rows in data.groupby("panel", observed=True):  # each panel has its own x scale
        limits = [rows["xpos"].min() - 0.5, rows["xpos"].max() + 0.5]
        breaks = scale.breaks(limits)
        labels = dict(zip(breaks, scale.labels(breaks), strict=True))
        assert sorted(labels.values(), key=int) == [str(c) for c in sorted(
            set(rows["cost_evals"]))]
        for centre, count in zip(rows["xpos"].round(), rows["cost_evals"], strict=True):
            assert labels[centre] == str(int(count))
    at_20 = data[(data["panel"] == "gaussian_quadratic") & (data["cost_evals"] == 20)]
    assert at_20["xpos"].nunique() == len(at_20) == 3  # side by side, not on each other


def test_overview_says_when_the_truth_is_an_estimate(tables):
    plot, _, _ = draw("overview", tables["cells"])
    panels = set(plot.data["panel"].astype(str))
    assert "gan_continuous\n(truth estimated)" in panels and "bernoulli_toy" in panels
    assert "reference estimate" in plot.labels.caption
    _layer(plot, "geom_errorbar", "low")


def test_bias_markers_follow_the_problem_not_the_global_flag(tables):
    """stl is declared biased (for K-sample bounds) but its target is the exact gradient of
    expectation objectives: filled on gaussian_elbo, hollow on its iwae objective; an
    estimator biased everywhere (gumbel_softmax) is hollow everywhere; a name the registry
    lacks falls back to the table's flag."""
    iwae = json.dumps({"objective": "iwae"})
    assert not ESTIMATORS["stl"].unbiased
    assert biased_on("stl", "gaussian_elbo", "{}") is False
    assert biased_on("stl", "gaussian_elbo", iwae) is True
    assert biased_on("gumbel_softmax", "bernoulli_toy", "{}") is True
    assert biased_on("reinforce", "gaussian_elbo", iwae) is False
    assert biased_on(PLUGIN, "bernoulli_toy", "{}", declared_unbiased=False) is True
    assert biased_on(PLUGIN, "bernoulli_toy", "{}", declared_unbiased=None) is False
    cells = tables["cells"]
    rows = cells[cells["problem"] == "gaussian_quadratic"].assign(problem="gaussian_elbo")
    stl = pd.concat([rows.assign(estimator="stl", unbiased=False),
                     rows.assign(estimator="stl", unbiased=False, problem_options=iwae)])
    stl = stl.drop_duplicates(["problem_options", "n_samples"]).assign(
        cell_key=lambda t: [f"s{i}" for i in range(len(t))])
    for name in ("overview", "efficiency"):
        plot, _, _ = draw(name, stl)
        marked = plot.data.set_index("problem_options")["biased"]
        assert not marked.loc["{}"].any() and marked.loc[iwae].all()


def _wide_cells(problems: int, estimators: list[str]) -> pd.DataFrame:
    """A cells table of every registered problem (repeated with another option set until
    there are ``problems``) times ``estimators`` at K = 2 and 8."""
    template = _cells().iloc[0]
    names = list(PROBLEMS)
    rows = []
    for i in range(problems):
        problem = names[i % len(names)]
        for j, estimator in enumerate(estimators):
            for k in (2, 8):
                variance = (1 + j) / k
                rows.append(template.to_dict() | {
                    "cell_key": f"{i}-{j}-{k}", "problem": problem,
                    "problem_options": json.dumps({"copy": i // len(names)}),
                    "estimator": estimator, "estimator_options": "{}", "n_samples": k,
                    "variance_trace": variance, "variance_trace_ci_low": 0.8 * variance,
                    "variance_trace_ci_high": 1.2 * variance, "mse": variance,
                    "mse_ci_low": 0.8 * variance, "mse_ci_high": 1.2 * variance,
                    "cost_evals": k, "time_per_estimate_s": 1e-4 * k, "unbiased": True,
                })
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name", ["overview", "variance_vs_samples", "efficiency_evals"])
@pytest.mark.parametrize("size", ["icml-page", "icml-column"])
def test_figures_of_many_problems_and_estimators_are_split_into_pages(name, size):
    """40 estimators on 24 problems: every page fits 8 x 9 in without squeezing (its natural
    height, before any cap, is at most a page), every problem and estimator is on exactly
    one page, and
    a split page holds problems of one family (named in the file, or the problem's name
    when a page holds one)."""
    cells = _wide_cells(24, list(ESTIMATORS)[:40])
    parts = pages(FIGURES[name], cells, SIZES[size])
    assert len(parts) > 1
    seen = []
    for stem, part in parts:
        drawn = FIGURES[name].draw(part, SIZES[size])
        caption = drawn.plot.labels.caption
        assert natural_height(drawn, SIZES[size], caption) <= PAGE_HEIGHT_IN, stem
        assert SIZES[size].width_in <= 8
        families = {str(PROBLEMS[p].latent) for p in part["problem"]}
        named = families | set(part["problem"])  # a page of one problem is named after it
        assert len(families) == 1 and stem.split("-")[1] in named, stem
        seen += list(part[["problem", "problem_options", "estimator"]].drop_duplicates()
                     .itertuples(index=False))
    # every (problem, estimator) on exactly one page: at the column width, 40 estimators'
    # legend fills a page, so the estimators are split too
    assert len(seen) == len(set(seen)) == len(cells[["problem", "problem_options",
                                                        "estimator"]].drop_duplicates())
    assert ("estimators" in " ".join(s for s, _ in parts)) == (size == "icml-column"
                                                              and name != "overview")
    # a table that fits one page is one file named after the figure
    small = cells[cells["problem"].isin(["bernoulli_toy", "gaussian_quadratic"])
                  & cells["problem_options"].eq('{"copy": 0}')
                  & cells["estimator"].isin(list(ESTIMATORS)[:6])]
    assert [stem for stem, _ in pages(FIGURES[name], small, SIZES[size])] == [name]


def _seeded_train(seeds: int, stall: float = 0.0) -> pd.DataFrame:
    rows = []
    for seed in range(seeds):
        table = _train().assign(seed=seed)
        table["value"] = table["value"] * (1 + 0.01 * seed)
        rows.append(table)
    train = pd.concat(rows, ignore_index=True)
    stalled = (train["seed"] == 0) & (train["estimator"] == "reinforce") & (train["step"] >= 60)
    train.loc[stalled, "wall_s"] += stall
    return train


def test_training_figure_draws_bands_over_seeds_and_ignores_stalls():
    plot, _, _ = draw("training", _seeded_train(3, stall=100.0))
    by_step, by_time, variance = plot.items
    assert [p.labels.title for p in plot.items] == ["a", "b", "c"]
    band = _layer(by_step, "geom_ribbon")
    assert (band["high"] > band["low"]).any() and (band["count"] == 3).all()
    at_100 = band[(band["estimator"] == "reinforce") & (band["step"] == 100)].iloc[0]
    assert at_100["value"] == pytest.approx(90 * 1.01)  # the mean of the three seeds
    # a 100 s stall of one seed does not move the time axis: median seconds per step
    reinforce = by_time.data[by_time.data["estimator"] == "reinforce"]
    assert reinforce["time"].max() == pytest.approx(1.0)
    assert "3 seeds" in str(by_time.labels.caption) + str(variance.labels.caption)
    one, _, _ = draw("training", _seeded_train(1))
    with pytest.raises(AssertionError):
        _layer(one.items[0], "geom_ribbon")


def test_size_presets_match_paper_text_widths_with_8_to_9_pt_text():
    widths = {name: size.width_in for name, size in SIZES.items()}
    assert widths["icml-column"] == 3.25 and widths["neurips"] == 5.5
    assert widths["icml-page"] == 6.75
    assert 8 <= theme.TEXT_PT <= theme.TITLE_PT <= 9
    sizes = [t.properties.get("size") for t in theme.paper_theme().themeables.values()
             if hasattr(t, "properties") and t.properties.get("size") is not None
             and type(t).__name__ in ("axis_text", "axis_title", "legend_text", "strip_text",
                                       "plot_caption", "plot_title")]
    assert sizes and all(8 <= s <= 9 for s in sizes)


def test_figures_of_a_real_tiny_run_through_the_cli(tmp_path, capsys, low_dpi):
    run = tmp_path / "run"
    run_sweep(estimators="reinforce,gumbel_softmax", problems="bernoulli_toy",
              samples=[2, 4], repeats=20, bootstrap=10, settings={"tau": [0.5, 1.0]},
              out=run, progress=False)
    out = tmp_path / "figures"
    assert bench_main(["figures", str(run), "--out", str(out), "--format", "png,pdf",
                       "--size", "single"]) == 0
    assert {p.name for p in out.iterdir()} == {
        f"{name}.{fmt}" for name in ("variance_vs_samples", "tau_tradeoff", "efficiency",
                                     "efficiency_evals", "overview") for fmt in ("png", "pdf")
    }
    assert bench_main(["figures", str(run), "--format", "gif"]) == 2
    assert bench_main(["figures", str(tmp_path / "absent")]) == 2
    (run / "cells.parquet").unlink()  # as an interrupted run leaves it
    assert bench_main(["figures", str(run)]) == 2
    assert "an interrupted bench run?" in capsys.readouterr().err


def test_paper_runs_and_draws_with_a_tiny_configuration(tmp_path, monkeypatch):
    tiny = replace(paper_cli.DEFAULT, problems="bernoulli_toy", samples=(2, 4), repeats=20,
                   bootstrap=10, taus=(0.5, 1.0), tau_samples=2, train_steps=2, eval_every=1,
                   variance_repeats=2, train_seeds=2)
    monkeypatch.setattr(paper_cli, "DEFAULT", tiny)
    monkeypatch.setattr(theme, "DPI", 40)
    out = tmp_path / "paper"
    assert bench_main(["paper", "--out", str(out), "--format", "png", "--no-progress",
                       "--estimators", "reinforce_loo,gumbel_softmax", "--threads", "1"]) == 0
    drawn = {p.stem for p in (out / "figures").iterdir()}
    assert {"variance_vs_samples", "tau_tradeoff", "efficiency", "overview", "training"} <= drawn
    cells = pd.read_parquet(out / "cells.parquet")
    assert set(cells["estimator"]) == {"reinforce_loo", "gumbel_softmax"}
    assert set(pd.read_parquet(out / "train.parquet")["seed"]) == {0, 1}


def test_training_tables_of_several_problems_give_one_file_each(tables, tmp_path, low_dpi):
    other = tables["train"].assign(problem="categorical_vae")
    train = pd.concat([tables["train"], other])
    written, _ = make_figures({"train": train}, tmp_path, ["png"])
    assert sorted(p.name for p in written) == [
        "training-bernoulli_vae.png", "training-categorical_vae.png"
    ]
    with pytest.raises(ValueError, match="draws one problem"):
        draw("training", train)


def test_a_run_without_ok_cells_skips_every_figure_with_a_note(tables, tmp_path):
    failed = tables["cells"].assign(status="failed")
    written, notes = make_figures({"cells": failed}, tmp_path, ["png"])
    assert written == []
    assert {n.split(":")[0] for n in notes} == set(FIGURES)


def test_paper_runs_a_curated_subset_and_sweeps_tau_of_biased_estimators():
    curated = paper_cli.select_estimators("curated")
    assert curated == [n for n in paper_cli.CURATED if n in ESTIMATORS]
    assert {"reinforce", "reinforce_loo", "gumbel_softmax"} <= set(curated)
    assert paper_cli.select_estimators("all") == list(ESTIMATORS)
    assert paper_cli.select_estimators("reparam, reinforce") == ["reparam", "reinforce"]
    with pytest.raises(ValueError, match="unknown nope; valid: curated, all"):
        paper_cli.select_estimators("reinforce,nope")

    class UnbiasedWithTau(ESTIMATORS["gumbel_softmax"]):  # e.g. REBAR: tau, but unbiased
        name = "unbiased_tau"
        unbiased = True

    with use_registry(current_registry().with_class(UnbiasedWithTau)) as registry:
        assert paper_cli.tau_estimators(list(registry.estimators)) == [
            n for n in ESTIMATORS if "tau" in ESTIMATORS[n].options and not ESTIMATORS[n].unbiased
        ]
    groups = paper_cli.by_samples(["reinforce", "reinforce_loo"], (1, 2, 4))
    assert groups == {(1, 2, 4): ["reinforce"], (2, 4): ["reinforce_loo"]}


def test_captions_are_wrapped_to_the_figure_width(tables):
    for size in ("icml-column", "icml-page"):
        plot, width, _ = draw("variance_vs_samples", tables["cells"], size)
        longest = max(len(line) for line in plot.labels.caption.split("\n"))
        assert longest * theme.TEXT_PT * 0.6 <= width * 72
    composed, width, _ = draw("training", _seeded_train(2), "icml-column")
    caption = composed.items[-1].labels.caption
    assert max(len(line) for line in caption.split("\n")) * theme.TEXT_PT * 0.6 <= width * 72


def test_reproduction_curves_that_coincide_are_drawn_apart():
    """Five losses that agree to 1e-4 on 0.35 (the ReinMax polynomial programme): the second
    row holds each one's difference from the reference, paired by replicate, with its own
    colour and marker; the reference's difference is 0 and a series 1e-4 above it is 1e-4
    above 0 (not lost in the first row's scale)."""
    from bench.report.figures.reproductions import difference_figure

    names = ["straight_through", "st_gumbel_softmax", "gst", "gumbel_rao", "reinmax"]
    rows = [{"setting": "p=2", "series": name, "replicate": r, "step": step, "metric": "loss",
             "value": 0.35 - 1e-3 * step + 1e-4 * j + 1e-6 * r}
            for j, name in enumerate(names) for r in range(2) for step in (0, 10, 20)]
    plot = difference_figure(pd.DataFrame(rows), "loss", "exact loss", "reinmax", "test")
    lower = plot.data[plot.data["panel"] == "exact loss − reinmax's"]
    final = lower[lower["step"] == 20].set_index("series")["y"].astype(float)
    assert np.allclose(final[names], [1e-4 * (j - 4) for j in range(5)])
    shapes = next(s for s in plot.scales if "shape" in s.aesthetics)
    assert plot.mapping["color"] == "series" and shapes.limits == names
    assert len({theme.estimator_styles(names)[n] for n in names}) == 5
    assert difference_figure(pd.DataFrame(rows), "loss", "loss", "absent", "test") is None


@pytest.mark.parametrize("name", ["overview", "variance_vs_samples", "efficiency"])
def test_the_floor_is_ticked_zero_and_no_tick_suggests_a_value_there(tables, name):
    """The floor's tick reads 0 and the ordinary ticks between the floor and the panel's
    smallest real value are gone (a "1e-8" beside a floored DisARM read as its value); a
    panel without a floor keeps its ordinary ticks, none of them "0"."""
    cells = tables["cells"].assign(truth_l2=1.0)
    plugin = cells["estimator"] == PLUGIN
    cells.loc[plugin, ["mse", "mse_ci_low", "mse_ci_high"]] = [1e-17, 1e-18, 1e-16]
    cells.loc[plugin, ["variance_trace", "variance_trace_ci_low",
                       "variance_trace_ci_high"]] = [0.0, 0.0, 0.0]
    plot, _, _ = draw(name, cells)
    floor = float(_floored(plot)["shown"].iloc[0])
    figure = plot.draw()
    ticked = []
    for axes in figure.axes:
        axis = axes.xaxis if name == "overview" else axes.yaxis  # overview is flipped
        # plotnine draws a log10 scale in log10 units
        labels = {10 ** float(v): t.get_text() for v, t in zip(axis.get_ticklocs(),
                                                               axis.get_ticklabels(),
                                                               strict=True)}
        low, high = 10 ** axis.get_view_interval()
        labels = {v: t for v, t in labels.items() if low <= v <= high}
        if "0" in labels.values():
            ticked.append(labels)
        else:
            assert labels, "a panel without ticks"
    assert len(ticked) == 1 and len(figure.axes) > 1
    (labels,) = ticked
    zero = next(v for v, t in labels.items() if t == "0")
    assert np.isclose(zero, floor)
    assert all(v >= floor * FLOOR_FACTOR * (1 - 1e-9) for v, t in labels.items() if t != "0")
