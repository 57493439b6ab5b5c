"""The polynomial programme's closed-form truth against brute force and finite differences."""

import itertools

import pytest
import torch

from problems import get_problem
from problems.base import repeat_params

F64 = torch.float64
THETA = torch.tensor([0.7, -1.3, 2.1], dtype=F64)


def build(power: float, c: float = 0.45):
    problem = get_problem("polynomial")({"p": power, "c": c, "d": 3}, dtype=F64)
    return problem, {"theta": THETA.clone()}


def brute_force(problem, theta):
    """sum over the 8 bit vectors of prod_j q(b_j) * mean_j |b_j - c|^p, written out."""
    p, c, power = torch.sigmoid(theta), problem.option_values["c"], problem.option_values["p"]
    total = theta.new_zeros(())
    for bits in itertools.product((0.0, 1.0), repeat=3):
        b = torch.tensor(bits, dtype=F64)
        mass = (b * p + (1 - b) * (1 - p)).prod()
        total = total + mass * ((b - c).abs() ** power).mean()
    return total


@pytest.mark.parametrize("power", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("c", [0.45, 0.8])
def test_objective_and_gradient_match_brute_force(power, c):
    problem, point = build(power, c)
    theta = point["theta"].clone().requires_grad_(True)
    exact = brute_force(problem, theta)
    assert problem.objective({"theta": theta.view(1, 3)}).item() == pytest.approx(
        exact.item(), rel=1e-12)
    (grad,) = torch.autograd.grad(exact, theta)
    truth = problem.truth(point)
    assert truth.kind == "closed_form"
    torch.testing.assert_close(truth.grad["theta"], grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("power", [1.5, 3.0])
def test_gradient_matches_central_differences(power):
    problem, point = build(power)
    truth = problem.truth(point).grad["theta"]
    step = 1e-6
    for j in range(3):
        shift = torch.zeros(3, dtype=F64)
        shift[j] = step
        up = problem.objective({"theta": (THETA + shift).view(1, 3)})
        down = problem.objective({"theta": (THETA - shift).view(1, 3)})
        assert ((up - down) / (2 * step)).item() == pytest.approx(truth[j].item(), rel=1e-7)


def test_cost_at_bits_and_the_published_minima():
    """The minimum is c^p with every bit at 0: 0.30187, 0.2025 and 0.091125 at c = 0.45."""
    minima = {1.5: 0.30187, 2.0: 0.2025, 3.0: 0.091125}
    for power, published in minima.items():
        problem = get_problem("polynomial")({"p": power, "theta": -40.0, "d": 4}, dtype=F64)
        params = repeat_params(problem.init_params(), 1, False)
        assert problem.objective(params).item() == pytest.approx(published, abs=5e-6)
        bits = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], dtype=F64)
        expected = (0.55**power + 3 * 0.45**power) / 4
        assert problem.cost(bits, params).item() == pytest.approx(expected, rel=1e-12)


def test_power_below_one_is_refused():
    with pytest.raises(ValueError, match=r"p=0.5 .*float >= 1"):
        get_problem("polynomial")({"p": 0.5})


@pytest.mark.parametrize(("power", "exact"), [(2.0, True), (3.0, False)])
def test_zgr_is_exact_only_for_the_quadratic_cost(power, exact):
    """ZGR's mean is the true gradient for costs quadratic in b (Shekhovtsov 2023): at p = 2
    the bias test passes, at p = 3 the same test rejects it."""
    from estimators import get_estimator
    from tests.stats import compare, draw_estimates, flat_truth

    problem = get_problem("polynomial")({"theta": 1.0, "d": 2, "p": power}, dtype=F64)
    result = compare(draw_estimates(problem, get_estimator("zgr")(), 4, 20_000),
                     flat_truth(problem))
    result.guard()
    assert result.consistent == exact


def test_training_records_the_exact_objective():
    problem = get_problem("polynomial")({"p": 2.0, "d": 4}, dtype=F64)
    metrics = problem.train_metrics({"theta": torch.full((4,), -40.0, dtype=F64)})
    assert metrics["objective"] == pytest.approx(0.2025, rel=1e-12)
