"""estimators.loop.surrogate_loss: the harness's gradients in a user's own training loop."""

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from estimators import get_estimator
from estimators.loop import surrogate_loss
from problems import get_problem
from problems.base import repeat_params

F64 = torch.float64


def bits_cost(z, params):
    return ((z - 0.45) ** 2).mean(-1)


def normal_cost(z, params):
    return ((z + 0.5) ** 2).sum(-1)


CASES = [
    # (estimator, options, K, registered problem and options, factory, cost)
    ("reinforce_loo", {}, 4, "bernoulli_toy", Bernoulli, bits_cost),
    ("disarm", {}, 4, "bernoulli_toy", Bernoulli, bits_cost),
    ("gumbel_softmax", {"tau": 0.5}, 2, "bernoulli_toy", Bernoulli, bits_cost),
    ("reinmax", {}, 3, "bernoulli_toy", Bernoulli, bits_cost),
    ("reparam", {}, 3, "gaussian_quadratic", Normal, normal_cost),
    ("mvd", {}, 2, "gaussian_quadratic", Normal, normal_cost),
]


@pytest.mark.parametrize(("name", "options", "k", "problem", "factory", "cost"), CASES,
                         ids=[c[0] for c in CASES])
def test_same_gradients_as_the_harness_under_the_same_seed(name, options, k, problem, factory,
                                                           cost):
    """The registered problem's harness step and the loop's backward, from one seed, give the
    same numbers to the last bit."""
    registered = get_problem(problem)(
        {"theta": 0.7, "d": 3} if problem == "bernoulli_toy" else {"mu": 1.0, "sigma": 1.5,
                                                                  "k": -0.5, "d": 3},
        dtype=F64)
    point = registered.init_params()
    torch.manual_seed(7)
    step = get_estimator(name)(options).step(registered, repeat_params(point, 1), k, {},
                                             train=False)
    mine = {key: value.clone().requires_grad_(True) for key, value in point.items()}
    if factory is Bernoulli:
        mine = {"logits": mine["theta"]}
    else:
        mine = {"loc": mine["mu"], "scale": mine["sigma"]}
    torch.manual_seed(7)
    surrogate_loss(factory, mine, cost, name, k, options=options).backward()
    for (key, expected), leaf in zip(step.grads.items(), mine.values(), strict=True):
        assert torch.equal(leaf.grad, expected[0]), key


def test_the_estimate_reaches_the_weights_of_the_model_that_made_the_parameters():
    """logits = W x: W.grad is the estimate of dL/dlogits chained through W (outer product)."""
    x = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    layer = torch.nn.Linear(3, 4, bias=False).double()
    torch.manual_seed(3)
    logits = layer(x)
    surrogate_loss(Bernoulli, {"logits": logits}, bits_cost, "disarm", 4).backward()
    torch.manual_seed(3)
    leaf = logits.detach().clone().requires_grad_(True)
    surrogate_loss(Bernoulli, {"logits": leaf}, bits_cost, "disarm", 4).backward()
    torch.testing.assert_close(layer.weight.grad, torch.outer(leaf.grad, x), rtol=1e-14, atol=0)


def test_training_with_it_lowers_the_exact_objective():
    theta = torch.zeros(4, dtype=F64, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.1)
    toy = get_problem("bernoulli_toy")({"d": 4}, dtype=F64)
    before = toy.objective({"theta": theta.detach().unsqueeze(0)}).item()
    for _ in range(100):
        optimizer.zero_grad()
        surrogate_loss(Bernoulli, {"logits": theta}, bits_cost, "reinforce_loo", 4).backward()
        optimizer.step()
    after = toy.objective({"theta": theta.detach().unsqueeze(0)}).item()
    assert after < before - 0.5 * (before - 0.45**2)  # more than half the way to the minimum


def test_per_repeat_state_is_carried_in_the_given_dict():
    theta = torch.zeros(2, dtype=F64, requires_grad=True)
    state: dict = {}
    surrogate_loss(Bernoulli, {"logits": theta}, bits_cost, "reinforce_ema", 2, state=state)
    first = {k: v.clone() for k, v in state.items()}
    surrogate_loss(Bernoulli, {"logits": theta}, bits_cost, "reinforce_ema", 2, state=state)
    assert first and any(not torch.equal(first[k], state[k]) for k in state)


@pytest.mark.parametrize(("estimator", "k", "message"), [
    ("relax", 2, "estimator .relax. trains parameters of its own"),
    ("reparam", 2, "reparam requires rsample"),
    ("disarm", 3, "disarm needs K >= 2, even, got K=3"),
    ("reinfrce", 2, "valid estimators: reinforce"),
])
def test_what_does_not_apply_is_one_line(estimator, k, message):
    theta = torch.zeros(2, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        surrogate_loss(Bernoulli, {"logits": theta}, bits_cost, estimator, k)
