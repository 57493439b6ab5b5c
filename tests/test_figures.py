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
from bench.report.figures import FIGURES, draw, make_figures
from bench.report.theme import DPI, PALETTE, SIZES, estimator_colours
from bench.sweep.run import run_sweep
from estimators import ESTIMATORS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cells() -> pd.DataFrame:
    """A synthetic cells table with the schema of cells.parquet: a K sweep of three
    estimators on two problems and a tau sweep of Gumbel-Softmax."""
    rows = []
    configs = [(p, e, {}, k) for p in ("gaussian_quadratic", "bernoulli_toy")
               for e in ("reinforce", "reinforce_loo") for k in (2, 4, 16)]
    configs += [("gaussian_quadratic", "reparam", {}, k) for k in (2, 4, 16)]
    configs += [("bernoulli_toy", "gumbel_softmax", {"tau": t}, k)
                for t in (0.1, 0.5, 1.0, 2.0) for k in ((2, 4, 16) if t == 1.0 else (4,))]
    for i, (problem, estimator, options, k) in enumerate(configs):
        variance = (3.0 + i % 3) / k
        bias = 0.0 if ESTIMATORS[estimator].unbiased else 0.05 * options.get("tau", 1.0)
        rows.append({
            "cell_key": f"{i:016x}", "run_id": "synthetic", "problem": problem,
            "problem_options": json.dumps({}), "estimator": estimator,
            "estimator_options": json.dumps(options or (
                {"tau": 1.0} if "tau" in ESTIMATORS[estimator].options else {})),
            "n_samples": k, "n_repeats": 100, "seed": 0, "device": "cpu", "dtype": "float32",
            "status": "ok", "unbiased": ESTIMATORS[estimator].unbiased, "truth": "closed_form",
            "variance_trace": variance, "variance_trace_ci_low": 0.8 * variance,
            "variance_trace_ci_high": 1.2 * variance,
            "bias_l2": bias + 0.01, "bias_l2_ci_low": bias + 0.005,
            "bias_l2_ci_high": bias + 0.02, "bias_l2_noise_floor": np.sqrt(variance / 100),
            "mse": bias**2 + variance, "mse_ci_low": 0.8 * variance,
            "mse_ci_high": 1.2 * variance + bias**2,
            "time_per_estimate_s": 1e-4 * k * (1 + i % 2),
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


@pytest.mark.parametrize("size", list(SIZES))
def test_every_figure_as_png_of_the_requested_size(tables, tmp_path, size):
    written, notes = make_figures(tables, tmp_path, ["png"], size)
    assert notes == []
    assert sorted(p.stem for p in written) == sorted(FIGURES)
    for path in written:
        _, width, height = draw(path.stem, tables[FIGURES[path.stem].table], size)
        assert width == SIZES[size].width_in
        assert png_size(path) == (round(width * DPI), round(height * DPI))


def test_pdf_output_has_the_requested_size(tables, tmp_path):
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


def test_figures_without_data_are_skipped_with_a_note(tables, tmp_path):
    single_k = tables["cells"][tables["cells"]["n_samples"] == 4]
    written, notes = make_figures({"cells": single_k}, tmp_path, ["png"])
    assert {p.stem for p in written} == {"tau_tradeoff", "efficiency", "overview"}
    assert any(n.startswith("variance_vs_samples: skipped") for n in notes)
    assert any(n.startswith("training: skipped, no train.parquet") for n in notes)
    with pytest.raises(ValueError, match=r"variance_vs_samples.*more than one K"):
        make_figures({"cells": single_k}, tmp_path, ["png"], names=["variance_vs_samples"])


def test_estimator_colours_are_fixed_by_registry_order_and_distinct():
    colours = estimator_colours()
    assert list(colours) == list(ESTIMATORS)
    assert colours[next(iter(ESTIMATORS))] == PALETTE[0]
    assert len(set(colours.values())) == min(len(ESTIMATORS), len(PALETTE))
    assert estimator_colours(["not_registered"])["not_registered"] not in PALETTE


def test_figures_of_a_real_tiny_run_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    run_sweep(estimators="reinforce,gumbel_softmax", problems="bernoulli_toy",
              samples=[2, 4], repeats=20, bootstrap=10, settings={"tau": [0.5, 1.0]},
              out=run, progress=False)
    out = tmp_path / "figures"
    assert bench_main(["figures", str(run), "--out", str(out), "--format", "png,pdf",
                       "--size", "single"]) == 0
    assert {p.name for p in out.iterdir()} == {
        f"{name}.{fmt}" for name in ("variance_vs_samples", "tau_tradeoff", "efficiency",
                                     "overview") for fmt in ("png", "pdf")
    }
    assert bench_main(["figures", str(run), "--format", "gif"]) == 2
    assert bench_main(["figures", str(tmp_path / "absent")]) == 2
    (run / "cells.parquet").unlink()  # as an interrupted run leaves it
    assert bench_main(["figures", str(run)]) == 2
    assert "an interrupted bench run?" in capsys.readouterr().err


def test_paper_runs_and_draws_with_a_tiny_configuration(tmp_path, monkeypatch):
    tiny = replace(paper_cli.DEFAULT, problems="bernoulli_toy", samples=(2, 4), repeats=20,
                   bootstrap=10, taus=(0.5, 1.0), tau_samples=2, train_steps=2, eval_every=1,
                   variance_repeats=2)
    monkeypatch.setattr(paper_cli, "DEFAULT", tiny)
    out = tmp_path / "paper"
    assert bench_main(["paper", "--out", str(out), "--format", "png", "--no-progress"]) == 0
    drawn = {p.stem for p in (out / "figures").iterdir()}
    assert {"variance_vs_samples", "tau_tradeoff", "efficiency", "overview"} <= drawn


def test_training_tables_of_several_problems_give_one_file_each(tables, tmp_path):
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
