"""ARSM (estimators/arsm.py): one estimate replayed from fixed Dirichlet noise against the
formula written out by hand, the pseudo-actions' symmetry, the mean against exact gradients
(closed form and enumeration, categorical and binary, with and without factors), the cost
count, and a broken twin (the swapped class's weight in place of the reference's) rejected by
the same test. Tolerances come from the estimates' own standard errors (tests/stats.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from estimators.arsm import ARSM, swap_actions
from problems import get_problem
from problems.base import repeat_params
from tests.examples import PROBLEM_EXAMPLES
from tests.stats import compare, draw_estimates, flat_truth, sample_variance_check

F64 = torch.float64


class FixedNoise(ARSM):
    """ARSM with its Dirichlet draws given."""

    def __init__(self, pi: torch.Tensor) -> None:
        super().__init__()
        self.pi = pi

    def dirichlet(self, shape, like):
        assert self.pi.shape == shape, (self.pi.shape, shape)
        return self.pi


class SwappedClassWeight(ARSM):
    """The classic slip: each swap weighted by 1/C - pi_c of the swapped class instead of
    1/C - pi_j of the reference."""

    def merge_weights(self, pi):
        return (1 / pi.shape[-1] - pi).unsqueeze(-1)


def by_hand(logits: np.ndarray, pi: np.ndarray, f) -> np.ndarray:
    """The ARSM estimate for one categorical variable, from the definition."""
    n = logits.size

    def action(p):
        return int(np.argmin(p * np.exp(-logits)))

    table = np.empty((n, n))
    for c, j in itertools.product(range(n), repeat=2):
        swapped = pi.copy()
        swapped[c], swapped[j] = pi[j], pi[c]
        table[c, j] = f(action(swapped))
    centred = table - table.mean(0, keepdims=True)
    return (centred * (1 / n - pi)[None, :]).sum(1)


def test_one_estimate_replays_the_definition():
    problem = get_problem("categorical_toy")({"d": 1, "classes": 4, "theta": 1.0}, dtype=F64)
    params = repeat_params(problem.init_params(), 1)
    logits = params["logits"].detach().reshape(-1).numpy()
    pi = torch.distributions.Dirichlet(torch.ones(4, dtype=F64)).sample((1, 1, 1, 1))
    out = FixedNoise(pi).surrogate(problem, params, 1, {})
    (grad,) = torch.autograd.grad(out.loss.sum(), [params["logits"]])
    eye = torch.eye(4, dtype=F64)

    def f(c: int) -> float:
        return float(problem.cost(eye[c].reshape(1, 1, 1, 4), problem.init_params()))

    expected = by_hand(logits, pi.reshape(-1).numpy(), f)
    np.testing.assert_allclose(grad.reshape(-1).numpy(), expected, rtol=1e-12, atol=1e-15)
    assert np.abs(expected).max() > 1e-3  # not vacuous


def test_pseudo_actions_are_symmetric_and_contain_the_sample():
    torch.manual_seed(0)
    phi = torch.randn(50, 5, dtype=F64)
    pi = torch.distributions.Dirichlet(torch.ones(5, dtype=F64)).sample((50,))
    actions = swap_actions(pi.log(), phi)  # [50, 5, 5]
    z = (pi * torch.exp(-phi)).argmin(-1)
    assert torch.equal(actions.diagonal(dim1=-2, dim2=-1), z[:, None].expand(50, 5))
    assert torch.equal(actions, actions.transpose(-1, -2))
    # a swap of two losers c, j leaves the winner z or hands it to c or j
    moved = actions != z[:, None, None]
    c, j = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    losers = (c != z[:, None, None]) & (j != z[:, None, None])
    assert bool(((actions == c) | (actions == j) | ~moved)[losers].all())
    assert bool(moved.any())


UNBIASED = [
    ("categorical_toy", {"d": 2, "classes": 4, "theta": 1.0}, 1),
    ("categorical_toy", {"d": 2, "classes": 4, "theta": 1.0}, 3),
    ("bernoulli_toy", {"d": 3, "theta": 0.7}, 2),
    ("bernoulli_vae", PROBLEM_EXAMPLES["bernoulli_vae"], 1),
    ("categorical_vae", PROBLEM_EXAMPLES["categorical_vae"], 2),
]


@pytest.mark.parametrize(("name", "options", "k"), UNBIASED)
def test_mean_is_the_exact_gradient(name, options, k):
    torch.manual_seed(1)
    problem = get_problem(name)(options, dtype=F64)
    check = compare(draw_estimates(problem, ARSM(), k, 20_000), flat_truth(problem))
    check.guard()
    assert check.consistent, check.z_scores


def test_the_swapped_class_weight_is_rejected():
    """The broken twin is biased, and the test above rejects it."""
    torch.manual_seed(1)
    problem = get_problem("categorical_toy")({"d": 2, "classes": 4, "theta": 1.0}, dtype=F64)
    check = compare(draw_estimates(problem, SwappedClassWeight(), 1, 20_000), flat_truth(problem))
    check.guard()
    assert not check.consistent


def test_cost_evaluations_are_counted():
    """cost_evals = K (1 + U C (C - 1) / 2): the rows the problem is evaluated on."""
    problem = get_problem("categorical_vae")(PROBLEM_EXAMPLES["categorical_vae"], dtype=F64)
    rows = []
    real = problem.cost_terms

    def counting(z, params, **kwargs):
        rows.append(z.shape[0])
        return real(z, params, **kwargs)

    problem.cost_terms = counting
    params = repeat_params(problem.init_params(), 3)
    ARSM().surrogate(problem, params, 2, {})
    assert sum(rows) == ARSM().cost_evals(2, problem) == 2 * (1 + 2 * 3)


def test_on_bits_it_is_arm_sample_for_sample():
    """With C = 2, pi = (u, 1 - u) and the merge gives (f(b) - f(b')) (1/2 - u) for
    b = 1[u < p], b' = 1[1 - u < p]: ARM's estimate (Yin et al. 2019 note the reduction), so
    ARM's closed-form moments on one bit (tests/test_antithetic.py) hold for ARSM. (With
    several bits they differ: ARM's partner flips every bit at once, ARSM swaps one.)"""
    from estimators.antithetic import ARM

    problem = get_problem("bernoulli_toy")({"d": 1, "theta": 0.7}, dtype=F64)
    params = repeat_params(problem.init_params(), 64)
    u = torch.rand(1, 64, 1, dtype=F64, generator=torch.Generator().manual_seed(2))

    class FixedARM(ARM):
        def uniforms(self, shape, like):
            return u

    pi = torch.stack([u, 1 - u], -1).reshape(1, 64, 1, 1, 2)
    grads = []
    for estimator, k in ((FixedNoise(pi), 1), (FixedARM(), 2)):
        out = estimator.surrogate(problem, params, k, {})
        grads.append(torch.autograd.grad(out.loss.sum(), [params["theta"]])[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-15)
    assert grads[0].abs().max() > 1e-3


@pytest.mark.parametrize("theta", [0.0, 1.3, -2.0])
def test_one_bit_variance_closed_form(theta):
    """On one bit g = (f(b) - f(b')) (1/2 - u) (above): with a = |p - 1/2|, the pair differs
    when u < 1/2 - a or u > 1/2 + a, so E[g^2] = Delta^2 2 int_a^{1/2} s^2 ds
    = Delta^2 (2/3)(1/8 - a^3) and Var g = that - (Delta p (1 - p))^2, Delta = 1 - 2t."""
    t = 0.45
    problem = get_problem("bernoulli_toy")({"d": 1, "theta": theta, "t": t}, dtype=F64)
    p = 1 / (1 + np.exp(-theta))
    a, delta = abs(p - 0.5), 1 - 2 * t
    exact = delta**2 * (2 / 3) * (1 / 8 - a**3) - (delta * p * (1 - p)) ** 2
    torch.manual_seed(3)
    sample_variance_check(draw_estimates(problem, ARSM(), 1, 20_000), np.array([exact]))
