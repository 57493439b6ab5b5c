"""The harness: metrics against direct computation, determinism, skips and failures, and
the CLI end to end."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cell.metrics import Accumulator
from bench.cell.run import run_cell
from bench.cli import main
from bench.registry import current_registry, use_registry
from bench.sweep.run import run_sweep
from bench.sweep.spec import SweepSpec, expand
from estimators import ESTIMATORS
from estimators.score_function import Reinforce

TIMING_AND_ENV = {
    "created_utc", "time_per_estimate_s", "time_iqr_s", "time_n", "estimates_per_s",
    "measure_s", "stats_s", "peak_memory_bytes", "cell_s",
}


def test_accumulator_matches_direct_computation():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(500, 3)) * [1.0, 2.0, 0.5] + [0.3, -1.0, 2.0]
    truth = np.array([0.25, -1.0, 2.1])
    acc = Accumulator(3, torch.tensor(truth), None, n_bootstrap=400, seed=1)
    for chunk in np.array_split(g, 7):
        acc.add(torch.tensor(chunk))
    out = acc.summary()
    mean, var = g.mean(0), g.var(0, ddof=1)
    np.testing.assert_allclose(out.mean, mean)
    np.testing.assert_allclose(out.variance, var)
    s = out.scalars
    np.testing.assert_allclose(s["bias_l2"], np.linalg.norm(mean - truth))
    np.testing.assert_allclose(s["variance_trace"], var.sum())
    np.testing.assert_allclose(s["mse"], np.mean(np.sum((g - truth) ** 2, 1)))
    cos = (g @ truth) / (np.linalg.norm(g, axis=1) * np.linalg.norm(truth))
    np.testing.assert_allclose(s["cosine"], cos.mean())
    np.testing.assert_allclose(s["snr"], np.linalg.norm(mean) / np.sqrt(var.sum()))
    np.testing.assert_allclose(out.bias_z, (mean - truth) / np.sqrt(var / 500))
    for name in ("bias_l2", "variance_trace", "mse"):
        assert s[f"{name}_ci_low"] < s[name] < s[f"{name}_ci_high"]
    # the interval of the variance trace is about +-1.96 of its standard error
    width = s["variance_trace_ci_high"] - s["variance_trace_ci_low"]
    assert 0.1 * var.sum() < width < 0.5 * var.sum()


def test_zero_variance_bias_z_keeps_the_sign_of_the_bias():
    """With zero variance only the floating-point tolerance is left in the z-score's
    denominator: a bias of 0.5 is 32768 tolerances (64 float32 epsilons x 2) away."""
    acc = Accumulator(3, torch.tensor([1.0, -1.0, 2.0]), None, n_bootstrap=0, seed=0)
    acc.add(torch.tensor([[0.5, -0.5, 2.0]] * 4))  # exact estimates
    out = acc.summary()
    np.testing.assert_array_equal(out.bias_z, [-32768.0, 32768.0, 0.0])
    assert out.scalars["bias_p_value"] < 1e-12


def test_accumulator_counts_non_finite_and_needs_two():
    acc = Accumulator(2, None, None, n_bootstrap=0, seed=0)
    acc.add(torch.tensor([[1.0, float("nan")], [1.0, 2.0]]))
    acc.close()  # the first estimates wait in a buffer until there are enough to centre on
    assert acc.n_nonfinite == 1 and acc.n == 1
    with pytest.raises(ValueError, match="at least 2"):
        acc.summary()


def test_bias_p_value_is_calibrated_at_tiny_r():
    trials, alpha = 4000, 0.05
    estimates = torch.randn(trials, 3, 1, dtype=torch.float64)  # R = 3 unbiased, truth 0
    rejected = 0
    for chunk in estimates:
        acc = Accumulator(1, truth=torch.zeros(1), truth_se=None, n_bootstrap=0, seed=0)
        acc.add(chunk)
        rejected += acc.summary().scalars["bias_p_value"] < alpha
    assert abs(rejected / trials - alpha) <= 4 * np.sqrt(alpha * (1 - alpha) / trials)


def test_reference_truth_noise_widens_the_bias_interval():
    g = torch.randn(400, 2, dtype=torch.float64)
    exact = Accumulator(2, torch.zeros(2), None, 500, seed=0)
    noisy = Accumulator(2, torch.zeros(2), torch.full((2,), 0.2), 500, seed=0)
    exact.add(g)
    noisy.add(g)
    e, n = exact.summary().scalars, noisy.summary().scalars
    assert n["bias_l2_ci_high"] > e["bias_l2_ci_high"]
    assert abs(n["bias_max_abs_z"]) < abs(e["bias_max_abs_z"])


def test_noise_floor_includes_the_reference_truth_noise():
    """For an unbiased estimator and an independent reference t' ~ N(t, se^2),
    E||m - t'||^2 = sum_c v_c / R + sum_c se_c^2: the floor must count both."""
    g = torch.randn(400, 2, dtype=torch.float64)
    se = torch.tensor([0.3, 0.4], dtype=torch.float64)
    acc = Accumulator(2, torch.zeros(2), se, 0, seed=0)
    acc.add(g)
    trace = float(g.var(0).sum())
    np.testing.assert_allclose(
        acc.summary().scalars["bias_l2_noise_floor"], np.sqrt(trace / 400 + 0.25)
    )


def spec(problem="bernoulli_toy", estimator="reinforce", **kw):
    sweep = SweepSpec(estimators=(estimator,), problems=(problem,), samples=(4,), repeats=200,
                      n_bootstrap=100, **kw)
    return expand(sweep)[0]


def test_same_seed_gives_identical_numbers():
    first, coords1 = run_cell(spec())
    second, coords2 = run_cell(spec())
    assert first["status"] == "ok"
    assert {k: v for k, v in first.items() if k not in TIMING_AND_ENV} == {
        k: v for k, v in second.items() if k not in TIMING_AND_ENV
    }
    assert coords1 == coords2
    other, _ = run_cell(spec(seed=1))
    assert other["variance_trace"] != first["variance_trace"]


def test_chunks_bound_memory_for_large_problems():
    from bench.cell.estimate import CHUNK_BYTES, measured_chunk_size, prepare
    from estimators import get_estimator
    from problems import get_problem

    toy, est = get_problem("bernoulli_toy")(), get_estimator("reinforce")()
    state, _ = prepare(toy, est, toy.init_params(), 10)
    assert measured_chunk_size(toy, est, toy.init_params(), 10, 1000, state) == 1000
    big = get_problem("bernoulli_vae")({"latents": 200, "arch": "mlp", "hidden": "200-200",
                                        "batch": 100, "truth": "none"})
    point = big.init_params()
    state, _ = prepare(big, est, point, 10)
    chunk = measured_chunk_size(big, est, point, 10, 1000, state)
    assert 1 <= chunk < 1000
    assert measured_chunk_size(big, est, point, 10, 1000, state, 4 * CHUNK_BYTES) > chunk


def test_a_budget_that_keeps_the_chunks_keeps_the_numbers():
    """--memory enters the key where it is not the default, not the seed: a cell whose chunks
    it leaves alone is bit-identical; one it splits into more chunks draws other numbers."""
    base = dataclasses.replace(spec(settings=(("d", ("200",)),)), n_repeats=2000)
    wide = dataclasses.replace(base, memory=2**30)
    narrow = dataclasses.replace(base, memory=2**20)
    assert len({base.key, wide.key, narrow.key}) == 3
    assert base.cell_seed == wide.cell_seed == narrow.cell_seed
    rows = [run_cell(s)[0] for s in (base, wide, narrow)]
    assert rows[0]["variance_trace"] == rows[1]["variance_trace"]
    assert rows[0]["variance_trace"] != rows[2]["variance_trace"]


def test_cell_keys_are_stable_and_complete():
    a, b = spec(), spec(seed=1)
    assert a.key == spec().key and a.key != b.key and len(a.key) == 16
    assert a.config()["estimator_options"] == {}
    assert expand(SweepSpec(estimators=("gumbel_softmax",), problems=("bernoulli_toy",)))[
        0
    ].config()["estimator_options"] == {"tau": 1.0}


def test_incompatible_pair_is_a_skipped_row():
    row, coords = run_cell(spec(problem="bernoulli_toy", estimator="reparam"))
    assert row["status"] == "skipped" and "requires rsample" in row["reason"]
    assert coords == []


class NaNEstimator(Reinforce):
    name = "nan_estimator"

    def surrogate(self, problem, params, n_samples, state):
        out = super().surrogate(problem, params, n_samples, state)
        out.loss = out.loss * float("nan")
        return out


class CrashingEstimator(Reinforce):
    name = "crashing_estimator"

    def surrogate(self, problem, params, n_samples, state):
        raise RuntimeError("boom")


def test_failures_become_rows_and_the_sweep_goes_on(tmp_path):
    registry = current_registry().with_class(NaNEstimator).with_class(CrashingEstimator)
    with use_registry(registry):
        cells = run_sweep("nan_estimator,crashing_estimator,reinforce", "bernoulli_toy",
                          samples=[4], repeats=50, bootstrap=0, out=tmp_path, progress=False)
    status = dict(zip(cells["estimator"], cells["status"], strict=True))
    assert status == {"nan_estimator": "failed", "crashing_estimator": "failed",
                      "reinforce": "ok"}
    reasons = dict(zip(cells["estimator"], cells["reason"], strict=True))
    assert "non-finite gradient estimate in 50 of 50" in reasons["nan_estimator"]
    assert reasons["crashing_estimator"] == "RuntimeError: boom"


def test_sweep_crosses_settings_only_where_they_apply():
    cells = expand(SweepSpec(estimators=("reinforce", "gumbel_softmax"),
                             problems=("bernoulli_toy",), samples=(1, 10),
                             settings=(("tau", ("0.5", "1")), ("theta", ("-1", "1")))))
    keys = [(c.estimator, dict(c.estimator_options).get("tau"), dict(c.problem_options)["theta"],
             c.n_samples) for c in cells]
    # reinforce: 2 theta x 2 K; gumbel_softmax: 2 tau x 2 theta x 2 K
    assert len(keys) == len(set(keys)) == 4 + 8
    assert {k[1] for k in keys if k[0] == "reinforce"} == {None}


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--problem", "bernoulli_toy,gaussian_quadratic",
                 "--estimator", "reinforce,reparam,reinforce_loo", "--samples", "2,8",
                 "--repeats", "100", "--bootstrap", "50", "--set", "d=2", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "biased" in printed and "variance" in printed and "1 cell(s) skipped" not in printed
    cells = pd.read_parquet(out / "cells.parquet")
    coords = pd.read_parquet(out / "coords.parquet")
    assert len(cells) == 2 * 3 * 2
    assert (cells["status"] == "skipped").sum() == 2  # reparam on the Bernoulli toy
    ok = cells[cells["status"] == "ok"]
    assert set(ok["truth"]) == {"closed_form"}
    assert ok["bias_l2"].notna().all() and (ok["variance_trace"] > 0).all()
    assert (ok["time_per_estimate_s"] > 0).all() and (ok["peak_memory_bytes"] > 0).all()
    assert ok["git_commit"].str.len().min() >= 7 and (ok["threads"] >= 1).all()
    assert len(coords) == ok["grad_dim"].sum()
    assert set(coords["cell_key"]) == set(ok["cell_key"])
    assert json.loads(cells["problem_options"].iloc[0])["d"] == 2
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["invocations"][0]["cells"] == 12

    # resume: nothing is recomputed
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert main(["run", "--problem", "bernoulli_toy,gaussian_quadratic",
                 "--estimator", "reinforce,reparam,reinforce_loo", "--samples", "2,8",
                 "--repeats", "100", "--bootstrap", "50", "--set", "d=2", "--out", str(out),
                 "--no-progress"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert before == after


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--estimator", "nope"], "unknown estimator 'nope'; valid estimators: all, reinforce"),
        (["--set", "tau=0"], "invalid option tau='0' for estimator 'gumbel_softmax'"),
        (["--set", "tua=1"], "unknown option 'tua'"),
        (["--samples", "0"], "every K must be >= 1"),
        (["--samples", ","], "invalid --samples: no K given"),
        (["--set", "theta=inf"], "invalid option theta='inf' for problem 'bernoulli_toy': "
                                 "expected a finite float"),
        (["--set", "theta=1", "--set", "theta=2"], "--set theta is given more than once"),
        (["--repeats", "1"], "R must be >= 2"),
        (["--estimator", "reinforce_loo", "--samples", "1"], "needs K >= 2"),
        (["--device", "tpu"], "invalid device 'tpu': expected cpu, cuda or cuda:N"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_out_below_a_file_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "file").touch()
    assert main(["run", "--out", str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "file exists and is not a directory" in err and len(err.splitlines()) == 1


def test_a_repeated_k_is_one_cell():
    cells = expand(SweepSpec(estimators=("reinforce",), problems=("bernoulli_toy",),
                             samples=(2, 2, 3)))
    assert [c.n_samples for c in cells] == [2, 3]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on CPU-only machines")
def test_cuda_request_without_cuda_is_one_clear_line(tmp_path, capsys):
    assert main(["run", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.cuda
def test_cuda_cell_runs_and_agrees_with_truth():
    row, _ = run_cell(spec(device="cuda"))
    assert row["status"] == "ok" and row["device"] == "cuda"
    assert row["bias_p_value"] > 1e-4


def test_list_shows_every_name(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ESTIMATORS:
        assert name in text
    assert "Applicable pairs" in text
