"""``mohamed2020_blr`` (Mohamed et al. 2020, Section 8): the short version runs the four
estimators with their replicates and writes its files; the training loop's SGD with the
quarter-cosine decay takes the steps the authors' configuration takes; the per-parameter
variance is the per-coordinate variance of the estimates averaged over each parameter."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from bench.cell.estimate import estimate_chunks, prepare
from bench.reproduce import reproduce
from bench.reproduce.mohamed_blr import SERIES, group_variances
from bench.training.loop import TrainRun
from estimators import get_estimator
from problems import get_problem


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("blr")
    return reproduce("mohamed2020_blr", "short", out), out


def test_short_version_runs_every_series_and_writes_its_files(short_run):
    (outcome, written, _), out = short_run
    assert outcome.ok and not outcome.errors and not outcome.waiting
    assert {p.name for p in written} >= {"run.parquet", "comparison.md", "figure.png"}
    data = pd.read_parquet(out / "run.parquet")
    assert set(data["series"]) == {name for name, _ in SERIES}
    for metric in ("variance_loc", "variance_log_scale", "full_nelbo", "accuracy"):
        part = data[data.metric == metric]
        assert set(part["step"]) == {0, 10} and set(part["replicate"]) == {0, 1}
        assert part["value"].map(math.isfinite).all()
        low = 0 if metric == "accuracy" else 1e-300  # accuracy is 0 at loc = 0
        assert part["value"].between(low, math.inf).all()
    assert len(outcome.claims) == 6
    assert all("not read" in c.source for c in outcome.claims)  # no invented published claim
    assert outcome.comparison["published"].str.startswith("not recoverable").all()


def test_sgd_with_quarter_cosine_decay_takes_the_configured_steps():
    """theta_{t+1} = theta_t - lr cos(pi t / (2 T)) g_t: replay three steps of reparam."""
    problem = get_problem("logistic_regression")({"batch": 32}, dtype=torch.float64)
    run = TrainRun.start(problem, get_estimator("reparam")({}), 2, 0.1, seed=3, sgd_cosine=4)
    assert isinstance(run.optimizer, torch.optim.SGD)
    for t in range(3):
        before = {k: v.detach().clone() for k, v in run.train.items()}
        run.step(t + 1)
        rate = 0.1 * math.cos(math.pi / 2 * t / 4)
        for key, value in run.train.items():
            torch.testing.assert_close(value.detach(), before[key] - rate * value.grad,
                                       rtol=1e-12, atol=1e-12)
    adam = TrainRun.start(problem, get_estimator("reparam")({}), 2, 0.1, seed=3)
    assert isinstance(adam.optimizer, torch.optim.Adam) and adam.schedule is None


def test_group_variances_average_each_parameters_coordinates():
    problem = get_problem("logistic_regression")({"batch": 8}, dtype=torch.float64)
    estimator = get_estimator("reparam")({})
    point = problem.init_params()
    state, _ = prepare(problem, estimator, point, 2)
    torch.manual_seed(5)
    values = group_variances(problem, estimator, point, 2, 40, state)
    torch.manual_seed(5)
    estimates = torch.cat(list(estimate_chunks(problem, estimator, point, 2, 40, state)))
    variances = estimates.var(0)
    assert values["variance_loc"] == pytest.approx(float(variances[:31].mean()), rel=1e-12)
    assert values["variance_log_scale"] == pytest.approx(float(variances[31:].mean()), rel=1e-12)
    assert values["variance_loc"] != pytest.approx(values["variance_log_scale"])
