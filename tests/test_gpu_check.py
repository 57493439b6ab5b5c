"""benchmarks/gpu_check.py: one line and exit 0 without CUDA; its CPU-versus-CUDA agreement
check accepts two independent samples of one estimator and rejects a shifted mean or a
different variance."""

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.gpu_check import agreement, main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_without_cuda_one_line_and_exit_0(tmp_path, capsys):
    assert main(["--report", str(tmp_path / "r.md"), "--work", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA device" in out
    assert not (tmp_path / "r.md").exists()


def tables(rng, shift: float = 0.0, scale: float = 1.0, n: int = 4000, d: int = 50):
    """Cells and coordinates of one cell measured from ``n`` Gaussian estimates in ``d``
    coordinates, with the variance trace's interval from a normal approximation."""
    draws = rng.normal(size=(n, d)) * scale + shift
    mean, var = draws.mean(0), draws.var(0, ddof=1)
    cell = {"problem": "p", "problem_options": "", "estimator": "e", "estimator_options": "",
            "n_samples": 4, "n_repeats": n}
    trace = var.sum()
    half = 1.96 * trace * np.sqrt(2 / (n - 1) / d)
    cells = pd.DataFrame([cell | {"variance_trace": trace, "variance_trace_ci_low": trace - half,
                                  "variance_trace_ci_high": trace + half}])
    coords = pd.DataFrame([cell | {"param": "x", "index": i, "mean": mean[i],
                                   "variance": var[i]} for i in range(d)])
    return cells, coords


def test_independent_samples_agree():
    rng = np.random.default_rng(0)
    table, z = agreement(tables(rng), tables(rng))
    assert table["agrees"].all() and table["max_z"].iloc[0] < z


@pytest.mark.parametrize(("shift", "scale", "broken"), [(0.15, 1.0, "max_z"),
                                                        (0.0, 1.3, "intervals_overlap")])
def test_a_shifted_mean_or_another_variance_is_rejected(shift, scale, broken):
    rng = np.random.default_rng(1)
    table, z = agreement(tables(rng), tables(rng, shift, scale))
    assert not table["agrees"].any()
    assert table["max_z"].iloc[0] > z if broken == "max_z" else not table[broken].any()
