"""Per-sample exact checks: replay the samples an estimate used and compare it with the
hand-derived per-sample formula (float64, so agreement is to rounding error)."""

import pytest
import torch

from bench.cell.estimate import one_estimate
from estimators import get_estimator
from problems import get_problem
from problems.base import repeat_params

K, R = 3, 5
F64 = torch.float64


def estimate(problem, estimator, state=None):
    params = repeat_params(problem.init_params(), R)
    state = estimator.init_state(params) if state is None else state
    out = estimator.surrogate(problem, params, K, state)
    names = list(params)
    grads = torch.autograd.grad(out.loss.sum(), [params[n] for n in names])
    return dict(zip(names, grads, strict=True)), out


def bernoulli(d=3, theta=0.7, t=0.3):
    return get_problem("bernoulli_toy")({"d": d, "theta": theta, "t": t}, dtype=F64)


def test_reinforce_bernoulli():
    problem = bernoulli()
    grads, out = estimate(problem, get_estimator("reinforce")())
    b, p = out.samples, torch.sigmoid(torch.tensor(0.7, dtype=F64))
    f = ((b - 0.3) ** 2).mean(-1, keepdim=True)  # [K, R, 1]
    torch.testing.assert_close(grads["theta"], (f * (b - p)).mean(0))


def test_reinforce_loo_bernoulli():
    problem = bernoulli()
    grads, out = estimate(problem, get_estimator("reinforce_loo")())
    b, p = out.samples, torch.sigmoid(torch.tensor(0.7, dtype=F64))
    f = ((b - 0.3) ** 2).mean(-1, keepdim=True)
    loo = (f.sum(0, keepdim=True) - f) / (K - 1)
    torch.testing.assert_close(grads["theta"], ((f - loo) * (b - p)).mean(0))


def test_reinforce_ema_uses_then_updates_its_baseline():
    problem = bernoulli()
    estimator = get_estimator("reinforce_ema")({"decay": 0.8})
    baseline = torch.linspace(0.0, 0.4, R, dtype=F64)
    grads, out = estimate(problem, estimator, {"baseline": baseline})
    b, p = out.samples, torch.sigmoid(torch.tensor(0.7, dtype=F64))
    f = ((b - 0.3) ** 2).mean(-1)  # [K, R]
    expected = ((f - baseline).unsqueeze(-1) * (b - p)).mean(0)
    torch.testing.assert_close(grads["theta"], expected)
    torch.testing.assert_close(out.state["baseline"], 0.8 * baseline + 0.2 * f.mean(0))


def test_reparam_gaussian_quadratic():
    problem = get_problem("gaussian_quadratic")({"mu": 0.5, "sigma": 2.0, "k": 1.0, "d": 2},
                                                dtype=F64)
    grads, out = estimate(problem, get_estimator("reparam")())
    x = out.samples
    eps = (x - 0.5) / 2.0
    torch.testing.assert_close(grads["mu"], (2 * (x - 1.0)).mean(0))
    torch.testing.assert_close(grads["sigma"], (2 * (x - 1.0) * eps).mean(0))


def test_reinforce_gaussian_elbo_includes_the_direct_term():
    problem = get_problem("gaussian_elbo")({"d": 2, "m": 0.3, "s": 1.5}, dtype=F64)
    grads, out = estimate(problem, get_estimator("reinforce")())
    z = out.samples
    m, s = torch.full((2,), 0.3, dtype=F64), torch.full((2,), 1.5, dtype=F64)
    f = problem.cost(z, repeat_params({"m": m, "s": s}, R, False)).unsqueeze(-1)  # [K, R, 1]
    score_m = (z - m) / s**2
    score_s = (z - m) ** 2 / s**3 - 1 / s
    # d log q / d theta appears twice: as the score (times f) and as the cost's own gradient
    torch.testing.assert_close(grads["m"], ((f + 1) * score_m).mean(0))
    torch.testing.assert_close(grads["s"], ((f + 1) * score_s).mean(0))


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel_softmax"])
def test_binary_concrete_gradients(name):
    tau, t, d = 0.7, 0.3, 3
    problem = bernoulli(d=d, t=t)
    grads, out = estimate(problem, get_estimator(name)({"tau": tau}))
    y = out.relaxed
    at = y if name == "gumbel_softmax" else out.samples  # where f' is evaluated
    torch.testing.assert_close(out.samples, (y > 0.5).to(F64))
    # y = sigmoid((theta + L) / tau)  =>  dy/dtheta = y (1 - y) / tau
    expected = (2 * (at - t) / d * y * (1 - y) / tau).mean(0)
    torch.testing.assert_close(grads["theta"], expected)


def test_straight_through_bernoulli():
    t, d = 0.3, 3
    grads, out = estimate(bernoulli(d=d, t=t), get_estimator("straight_through")())
    p = torch.sigmoid(torch.tensor(0.7, dtype=F64))
    expected = (2 * (out.samples - t) / d * p * (1 - p)).mean(0)
    torch.testing.assert_close(grads["theta"], expected)


def categorical():
    return get_problem("categorical_toy")({"d": 2, "classes": 4, "theta": 0.8, "t": 0.3},
                                          dtype=F64)


def categorical_cost_grad(problem, z):
    """df/dz_jc = 2 (s - t) v_c / d for f = (mean_j <z_j, v> - t)^2."""
    v = problem.class_values()
    s = (z @ v).mean(-1, keepdim=True).unsqueeze(-1)  # [K, R, 1, 1]
    return 2 * (s - 0.3) * v / z.shape[-2]


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel_softmax", "straight_through"])
def test_categorical_relaxed_and_straight_through(name):
    tau = 0.6
    problem = categorical()
    options = {} if name == "straight_through" else {"tau": tau}
    grads, out = estimate(problem, get_estimator(name)(options))
    if name == "straight_through":
        # z_st = z + p - sg(p): backward through p = softmax(l), dp_i/dl_j = p_i (delta_ij - p_j)
        y = torch.softmax(problem.init_params()["logits"], -1)
        g = categorical_cost_grad(problem, out.samples)
        scale = 1.0
    else:
        # y = softmax((l + G) / tau): dy_i/dl_j = y_i (delta_ij - y_j) / tau
        y = out.relaxed
        at = y if name == "gumbel_softmax" else out.samples
        torch.testing.assert_close(out.samples.argmax(-1), y.argmax(-1))
        g = categorical_cost_grad(problem, at)
        scale = 1 / tau
    expected = (scale * y * (g - (g * y).sum(-1, keepdim=True))).mean(0)
    torch.testing.assert_close(grads["logits"], expected)


def test_one_estimate_matches_surrogate_gradient():
    problem = bernoulli()
    estimator = get_estimator("reinforce")()
    params = repeat_params(problem.init_params(), R)
    torch.manual_seed(3)
    grads, _ = one_estimate(problem, estimator, params, K, {})
    torch.manual_seed(3)
    expected, _ = estimate(problem, estimator)
    torch.testing.assert_close(grads["theta"], expected["theta"])
