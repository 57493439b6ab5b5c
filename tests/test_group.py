"""The group estimators (``grpo``, ``dr_grpo``): replayed samples, their exact identities
with leave-one-out and the true gradient, their exact bias by enumeration, statistical
agreement with it, broken twins, and bad input."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch

from bench.cell.run import run_cell
from bench.cell.spec import CellSpec
from bench.cli import main
from estimators import get_estimator
from estimators.enumerate import exact_moments
from estimators.group import GRPO, group_advantages
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth, variance_consistent

F64 = torch.float64
R = 20_000


def toy(theta: float = 0.0):
    return get_problem("bernoulli_toy")({"theta": theta}, dtype=F64)


def policy(**options):
    return get_problem("policy")({"prompts": 1, "eos_logit": -0.5, **options}, dtype=F64)


def one_bit_grpo_mean(k: int, theta: float, t: float, ddof: int, eps: float) -> float:
    """E[g] of the default GRPO on one bit, by enumerating the 2^K outcomes by hand:
    f(b) = (b - t)^2, d log q / d theta = b - p, A_k = (f_k - mean f) / (std f + eps)."""
    p = 1 / (1 + math.exp(-theta))
    total = 0.0
    for bits in itertools.product((0, 1), repeat=k):
        b = np.array(bits, dtype=float)
        f = (b - t) ** 2
        std = f.std(ddof=ddof)
        advantage = (f - f.mean()) / (std + eps)
        weight = p ** b.sum() * (1 - p) ** (k - b.sum())
        total += weight * float(np.mean(advantage * (b - p)))
    return total


def test_default_grpo_on_one_bit_is_0_3492_against_a_true_0_025():
    """The issue's numbers, derived: theta = 0, t = 0.45, K = 4, ddof = 1, eps = 1e-4."""
    derived = one_bit_grpo_mean(4, 0.0, 0.45, 1, 1e-4)
    problem = toy()
    mean, _ = exact_moments(problem, GRPO(), problem.init_params(), 4)
    assert float(mean[0]) == pytest.approx(derived, rel=1e-12)
    assert round(derived, 4) == 0.3492
    assert round(float(flat_truth(problem)[0]), 4) == 0.025


def test_grpo_replays_its_samples_by_hand():
    """One fixed group on one bit: g = (1/K) sum_k A_k (b_k - p)."""
    problem, estimator = toy(0.4), GRPO({"eps": 0.01})
    params = repeat_params(problem.init_params(), 1)
    b = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=F64).reshape(4, 1, 1)
    out = estimator.surrogate_at(problem, params, problem.distribution(params), b)
    got = torch.autograd.grad(out.loss.sum(), params["theta"])[0].item()
    p, f = torch.sigmoid(torch.tensor(0.4, dtype=F64)).item(), (b.flatten() - 0.45) ** 2
    advantage = (f - f.mean()) / (f.std() + 0.01)
    assert got == pytest.approx(float((advantage * (b.flatten() - p)).mean()), rel=1e-12)


@pytest.mark.parametrize("mode", ["sequence", "token", "none"])
def test_length_normalisations_replay_by_hand(mode):
    """Two fixed responses of lengths 3 and 1: g = sum_k A_k / D_k grad log q(o_k), with
    D_k = K |o_k| (sequence), |o_1| + |o_2| (token), K (none)."""
    problem = policy()
    point = {"logits": torch.randn_like(problem.init_params()["logits"])}
    z = torch.tensor([[1, 1, 0], [2, 2, 2]]).reshape(2, 1, 1, 3)  # rewards 1 and 0
    params = repeat_params(point, 1)
    dist = problem.distribution(params)
    out = GRPO({"scale": "none", "length_norm": mode}).surrogate_at(problem, params, dist, z)
    got = torch.autograd.grad(out.loss.sum(), params["logits"])[0]
    scores = [torch.autograd.grad(problem.log_prob_terms(problem.distribution(params),
                                                         z[k : k + 1]).sum(),
                                  params["logits"])[0] for k in range(2)]
    advantage = [-0.5, 0.5]  # costs -1 and 0 around their mean -1/2
    divisor = {"sequence": [6, 2], "token": [4, 4], "none": [2, 2]}[mode]
    expected = sum(a / d * s for a, d, s in zip(advantage, divisor, scores, strict=True))
    assert torch.allclose(got, expected, atol=1e-14)


def test_grpo_without_std_is_k_minus_1_over_k_times_leave_one_out_sample_by_sample():
    problem, k = toy(0.7), 5
    params = repeat_params(problem.init_params(), 200)
    grads = []
    for name, options in (("grpo", {"scale": "none"}), ("reinforce_loo", {})):
        torch.manual_seed(3)  # the same draws: both sample first, K from q
        step = get_estimator(name)(options).step(problem, params, k, {}, train=False)
        grads.append(step.grads["theta"])
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], (k - 1) / k * grads[1], atol=1e-15)


@pytest.mark.parametrize(("name", "options", "problem", "factor"), [
    ("grpo", {"scale": "none"}, "toy", lambda k: (k - 1) / k),
    ("grpo", {"scale": "none", "length_norm": "none"}, "policy", lambda k: (k - 1) / k),
    ("dr_grpo", {}, "toy", lambda k: (k - 1) / k),
    ("dr_grpo", {}, "policy", lambda k: (k - 1) / (3 * k)),
])
def test_exact_mean_is_a_rescaled_true_gradient(name, options, problem, factor):
    prob = toy(0.7) if problem == "toy" else policy()
    for k in (2, 3):
        mean, _ = exact_moments(prob, get_estimator(name)(options), prob.init_params(), k)
        truth = torch.as_tensor(flat_truth(prob))
        assert truth.abs().max() > 1e-3
        assert torch.allclose(mean, factor(k) * truth, atol=1e-14)


def test_sequence_normalisation_bias_is_not_a_rescaling():
    """Per-sequence division reweighs responses by length: on the policy its mean is not a
    multiple of the true gradient (a coordinate's sign even flips), unlike ``none``."""
    prob = policy()
    truth = torch.as_tensor(flat_truth(prob))
    mean, _ = exact_moments(prob, GRPO({"scale": "none"}), prob.init_params(), 3)
    ratio = (mean / truth)[truth.abs() > 1e-9]
    assert ratio.max() - ratio.min() > 0.1 and (ratio < 0).any()


class VarianceScaledGRPO(GRPO):
    """Deliberately broken: divides by the group's variance instead of its std."""

    name = "broken_variance_grpo"

    def advantage(self, cost):
        centred = cost - cost.mean(0, keepdim=True)
        return centred / (cost.var(0, correction=1, keepdim=True) + self.option_values["eps"])


class SelfBaselineLOO(GRPO):
    """Deliberately broken leave-one-out: the group mean includes the sample itself and is
    not corrected by K / (K - 1), so it is GRPO without std, claimed unbiased."""

    name = "broken_self_loo"
    unbiased = True


@pytest.mark.parametrize(("estimator", "passes"), [(GRPO(), True), (VarianceScaledGRPO(), False)])
def test_grpo_mean_matches_the_hand_enumeration_and_a_wrong_scale_is_caught(estimator, passes):
    """The Monte Carlo mean against the exact mean of the docstring's formula (hand
    enumeration), and against the true gradient, which it must miss (biased)."""
    problem = toy(1.0)
    estimates = draw_estimates(problem, estimator, 4, R)
    exact = np.array([one_bit_grpo_mean(4, 1.0, 0.45, 1, 1e-4)])
    result = compare(estimates, exact)
    result.guard()
    assert result.consistent is passes
    assert not compare(estimates, flat_truth(problem)).consistent, "bias not shown"


@pytest.mark.parametrize("name", ["grpo", "dr_grpo"])
def test_variance_matches_enumeration_on_the_policy(name):
    prob = policy()
    estimator = get_estimator(name)()
    mean, variance = exact_moments(prob, estimator, prob.init_params(), 3)
    estimates = draw_estimates(prob, estimator, 3, R)
    keep = variance.numpy() > 1e-10
    result = compare(estimates[:, keep], mean.numpy()[keep])
    result.guard()
    assert result.consistent
    assert variance_consistent(estimates[:, keep], variance.numpy()[keep])


def test_a_baseline_that_sees_its_own_sample_is_caught_and_the_corrected_one_passes():
    problem = toy(1.0)
    estimates = draw_estimates(problem, SelfBaselineLOO({"scale": "none"}), 4, R)
    truth = flat_truth(problem)
    broken, fixed = compare(estimates, truth), compare(estimates * 4 / 3, truth)
    broken.guard()
    fixed.guard()
    assert not broken.consistent and fixed.consistent


def test_advantages_of_a_constant_group_are_zero():
    cost = torch.full((4, 2, 3), 0.7, dtype=F64)
    assert torch.equal(group_advantages(cost, "std", 1, 1e-4), torch.zeros_like(cost))


def test_k1_is_a_skipped_cell_with_the_reason():
    """As in ``bench run --estimator all --samples 1`` (a named grpo with K = 1 is exit 2)."""
    assert "grpo needs K >= 2" in GRPO.sample_rule(1)
    spec = CellSpec("bernoulli_toy", (), "grpo", (), n_samples=1, n_repeats=4, seed=0)
    row, coords = run_cell(spec)
    assert row["status"] == "skipped" and "K >= 2" in row["reason"] and coords == []


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "eps=-1"], "eps='-1' .*float >= 0"),
    (["--set", "ddof=4", "--samples", "4"], "ddof=4 .* needs ddof < K"),
    (["--samples", "1"], "grpo needs K >= 2"),
])
def test_bad_grpo_options_exit_2_with_one_line(tmp_path, capsys, args, message):
    base = ["run", "--problem", "bernoulli_toy", "--estimator", "grpo", "--repeats", "4",
            "--no-progress", "--out", str(tmp_path / "run")]
    if "--samples" not in args:
        args = [*args, "--samples", "2"]
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()
