"""CARMS (Dimitriev & Zhou 2021): ARMS sample for sample at two classes on one variable, the
pair law against sampled pair frequencies, a hand replay, means against enumeration, and two
broken twins (no importance weights; a single layout, under which some pairs never occur)
rejected."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from estimators import get_estimator
from estimators.carms import CARMS, dirichlet_uniforms, layouts, pair_law, right_ends
from problems import get_problem
from problems.base import repeat_params
from tests.examples import PROBLEM_EXAMPLES
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64


def grads_of(problem, estimator, n_samples, n_repeats, seed):
    params = repeat_params(problem.init_params(), n_repeats)
    torch.manual_seed(seed)
    out = estimator.surrogate(problem, params, n_samples, estimator.init_state(params))
    return torch.autograd.grad(out.loss.sum(), list(params.values()))[0], out


@pytest.mark.parametrize("n_samples", [2, 3, 5])
@pytest.mark.parametrize("theta", [-1.5, 0.0, 0.7, 2.5])
def test_two_classes_on_one_variable_is_arms(theta, n_samples):
    """Same seed, same uniforms: identical estimates on one bit (for K = 2 ARMS is DisARM)."""
    problem = get_problem("bernoulli_toy")({"theta": theta, "d": 1, "t": 0.3}, dtype=F64)
    arms, _ = grads_of(problem, get_estimator("arms")(), n_samples, 50, seed=3)
    ours, _ = grads_of(problem, CARMS(), n_samples, 50, seed=3)
    torch.testing.assert_close(ours, arms, rtol=1e-12, atol=1e-15)
    assert arms.abs().max() > 0


def test_a_two_class_categorical_is_arms_on_its_bit():
    """categorical_toy with 2 classes and logits (-theta, theta) is a bit of logit 2 theta:
    the estimate w.r.t. the second logit is ARMS's, the first its negative."""
    theta = 0.6
    cat = get_problem("categorical_toy")({"theta": theta, "d": 1, "classes": 2, "t": 0.3},
                                         dtype=F64)
    bit = get_problem("bernoulli_toy")({"theta": 2 * theta, "d": 1, "t": 0.3}, dtype=F64)
    ours, _ = grads_of(cat, CARMS(), 4, 50, seed=9)
    arms, _ = grads_of(bit, get_estimator("arms")(), 4, 50, seed=9)
    torch.testing.assert_close(ours[:, 0, 1], arms[:, 0], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(ours[:, 0, 0], -arms[:, 0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_samples", [2, 3])
@pytest.mark.parametrize("probs", [[0.1, 0.2, 0.3, 0.4], [0.25] * 4, [0.05, 0.05, 0.1, 0.8]])
def test_pair_law_matches_sampled_pairs_and_every_distinct_pair_occurs(n_samples, probs):
    """J against the frequencies of (z_1, z_2) over 40,000 draws of the uniforms and layout
    (chi-square); its margins are p; every J_ab with a != b is positive (at K = 2 too, where
    u_2 = 1 - u_1, and with ties)."""
    p = torch.tensor(probs, dtype=F64)
    joint = pair_law(p, n_samples)
    np.testing.assert_allclose(joint.sum(-1).numpy(), p.numpy(), rtol=1e-12)
    np.testing.assert_allclose(joint.sum(-2).numpy(), p.numpy(), rtol=1e-12)
    assert (joint + torch.eye(4, dtype=F64)).min() > 0
    n = 40_000
    u = dirichlet_uniforms(torch.Size((n_samples, n)), p)  # [K, n]
    choice = torch.randint(6, (n,))
    layout = layouts(p)[choice]  # [n, C]
    right = right_ends(p, layout.unsqueeze(-2)).squeeze(-2)  # [n, C]
    position = (u.unsqueeze(-1) >= right).sum(-1).clamp(max=3)  # [K, n]
    z = layout.gather(-1, position.T).T  # [K, n]
    counts = np.zeros((4, 4))
    np.add.at(counts, (z[0].numpy(), z[1].numpy()), 1)
    expected = joint.numpy().reshape(-1) * n
    keep = expected > 0
    assert counts.reshape(-1)[~keep].sum() == 0  # impossible pairs never drawn
    assert chisquare(counts.reshape(-1)[keep], expected[keep]).pvalue > 1e-4


def test_replay_on_a_categorical_toy():
    """g = (1/K) sum_i (e_{z_i} - p) (1/(K-1)) sum_{j != i} p_a p_b / J_ab (f_i - f_j), by
    hand from the drawn samples, per group (f couples the two groups)."""
    problem = get_problem("categorical_toy")({"theta": 0.8, "d": 2, "classes": 3, "t": 0.3},
                                             dtype=F64)
    k = 3
    grads, out = grads_of(problem, CARMS(), k, 6, seed=1)
    lg = problem.init_params()["logits"]
    p = torch.softmax(lg, -1).numpy()  # [2, C]
    joint = pair_law(torch.softmax(lg, -1), k).numpy()  # [2, C, C]
    z = out.samples.argmax(-1).numpy()  # [K, R, 2]
    v = problem.class_values().numpy()
    for r in range(6):
        f = [((v[z[i, r, 0]] + v[z[i, r, 1]]) / 2 - 0.3) ** 2 for i in range(k)]
        want = np.zeros((2, 3))
        for g, i in itertools.product(range(2), range(k)):
            a = z[i, r, g]
            total = sum(p[g, a] * p[g, z[j, r, g]] / joint[g, a, z[j, r, g]] * (f[i] - f[j])
                        for j in range(k) if j != i)
            want[g] += (np.eye(3)[a] - p[g]) * total / (k - 1) / k
        np.testing.assert_allclose(grads[r].numpy(), want, rtol=1e-10, atol=1e-14)


CASES = [
    ("bernoulli_toy", {"theta": 1.0, "d": 3, "t": 0.3}, 3),
    ("categorical_toy", {"theta": 1.0, "d": 2, "classes": 4}, 2),
    ("categorical_toy", {"theta": 0.0, "d": 1, "classes": 3}, 2),  # ties
    ("categorical_toy", {"theta": 1.0, "d": 2, "classes": 4}, 5),
    ("categorical_vae", PROBLEM_EXAMPLES["categorical_vae"], 4),
    ("bernoulli_vae", PROBLEM_EXAMPLES["bernoulli_vae"], 4),
]


@pytest.mark.parametrize(("name", "options", "n_samples"), CASES,
                         ids=[f"{c[0]}-K{c[2]}" for c in CASES])
def test_mean_matches_the_truth(name, options, n_samples):
    problem = get_problem(name)(options, dtype=F64)
    result = compare(draw_estimates(problem, CARMS(), n_samples, 20_000), flat_truth(problem))
    result.guard()
    assert result.consistent


class UnweightedCARMS(CARMS):
    """Broken: leave-one-out REINFORCE on the coupled samples, without the weights."""

    name = "broken_carms_unweighted"

    def weighted_loo(self, onehot, category, f, p, n_samples):
        diff = f.unsqueeze(1) - f.unsqueeze(0)
        return ((onehot - p) * (diff.sum(1) / (n_samples - 1)).unsqueeze(-1)).mean(0)


def one_layout(p):
    """Broken layouts: the increasing order only (at K = 2 two unlikely classes can never
    pair up)."""
    return layouts(p)[..., -1:, :]


@pytest.mark.parametrize("twin", ["unweighted", "one_layout"])
def test_broken_twins_are_rejected(monkeypatch, twin):
    problem = get_problem("categorical_toy")({"theta": 1.0, "d": 1, "classes": 4}, dtype=F64)
    truth = flat_truth(problem)
    good = compare(draw_estimates(problem, CARMS(), 2, 20_000), truth)
    good.guard()
    assert good.consistent
    if twin == "one_layout":
        import estimators.carms as module

        monkeypatch.setattr(module, "layouts", one_layout)
        estimator = CARMS()
    else:
        estimator = UnweightedCARMS()
    assert not compare(draw_estimates(problem, estimator, 2, 20_000), truth).consistent
