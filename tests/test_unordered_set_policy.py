"""The unordered-set estimator on the sequence ``policy`` (issue 23): per prompt, K responses
without replacement (Gumbel-top-k of the enumerated responses). Means against the enumerated
gradient, the whole domain (K = N) exact with variance 0, K = 1 replayed as REINFORCE on its
sample, a deterministic-beam twin (top K without the Gumbel perturbation) rejected, and the skip
where the responses are not enumerable.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estimators.without_replacement import UnorderedSet
from problems import get_problem
from problems.base import repeat_params
from problems.policy import n_responses
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64


def make(**options):
    return get_problem("policy")({"vocab": 2, "length": 3, "prompts": 2, "eos_logit": -0.5,
                                  **options}, dtype=F64)


@pytest.mark.parametrize("n_samples", [2, 4])
def test_mean_matches_the_enumerated_gradient(n_samples):
    problem = make()
    result = compare(draw_estimates(problem, UnorderedSet(), n_samples, 20_000),
                     flat_truth(problem))
    result.guard()
    assert result.consistent, f"max |z| = {np.abs(result.z_scores).max():.2f}"


def test_the_whole_domain_is_exact():
    problem = make(length=2)
    n = n_responses(2, 2)  # 7 responses per prompt
    estimates = draw_estimates(problem, UnorderedSet(), n, 50)
    np.testing.assert_allclose(estimates, np.broadcast_to(flat_truth(problem), estimates.shape),
                               rtol=1e-9, atol=1e-12)
    assert UnorderedSet().cost_evals(n + 3, problem) == n


def test_one_sample_is_reinforce_on_its_response():
    """At K = 1, R = 1 / p(s): g = f(s) grad log p(s) for the drawn response of each prompt."""
    problem = make()
    params = repeat_params(problem.init_params(), 10)
    out = UnorderedSet().surrogate(problem, params, 1, {})
    (grads,) = torch.autograd.grad(out.loss.sum(), [params["logits"]])
    dist = problem.distribution(params)
    want = (problem.cost_terms(out.samples, params).detach()
            * problem.log_prob_terms(dist, out.samples)).sum()
    (expected,) = torch.autograd.grad(want, [params["logits"]])
    torch.testing.assert_close(grads, expected, rtol=1e-12, atol=1e-14)
    assert grads.abs().max() > 0


class DeterministicBeam(UnorderedSet):
    """Broken: the K most probable responses (beam search) instead of a Gumbel-top-k draw."""

    name = "broken_unordered_set_beam"

    @staticmethod
    def gumbels(like):
        return torch.zeros_like(like)


def test_a_deterministic_beam_is_rejected():
    problem = make()
    broken = draw_estimates(problem, DeterministicBeam(), 2, 2000)
    assert not compare(broken, flat_truth(problem)).consistent


def test_skipped_with_the_reason_beyond_enumeration():
    assert UnorderedSet.incompatibility(make()) is None
    reason = UnorderedSet.incompatibility(make(max_configs=10))
    assert reason is not None and "enumeration" in reason and "policy" in reason
