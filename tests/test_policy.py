"""The ``policy`` problem: its enumeration against sampling and finite differences, the
bandit's closed form, and the score-function estimators against its exact gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estimators import ESTIMATORS, get_estimator
from problems import get_problem
from problems.base import Capability, repeat_params
from problems.policy import all_responses, n_responses
from tests.stats import compare, draw_estimates, flat_truth, z_threshold

F64 = torch.float64


def make(**options):
    return get_problem("policy")({"vocab": 2, "length": 3, "prompts": 2, **options}, dtype=F64)


def test_responses_are_every_sequence_once():
    z = all_responses(3, 3)
    assert z.shape == (n_responses(3, 3), 3) == (1 + 3 + 9 + 27, 3)
    assert len({tuple(row.tolist()) for row in z}) == z.shape[0]


@pytest.mark.parametrize("param", ["tabular", "mlp"])
def test_enumerated_probabilities_sum_to_one_and_match_sampling(param):
    problem = make(param=param, eos_logit=-0.5)
    point = problem.init_params()
    if param == "tabular":
        point = {"logits": torch.randn_like(point["logits"])}
    else:
        point = {**point, "w2": torch.randn_like(point["w2"])}
    probs = problem.response_probs(repeat_params(point, 1, requires_grad=False))[0]  # [P, N]
    assert torch.allclose(probs.sum(-1), torch.ones(2, dtype=F64), atol=1e-12)
    n = 40_000
    z = problem.distribution(repeat_params(point, 1, requires_grad=False)).sample((n,))[:, 0]
    matches = (z.unsqueeze(-2) == problem.responses()).all(-1)  # [n, P, N]
    assert bool(matches.any(-1).all()), "a sampled response is not among the enumerated ones"
    freq = matches.double().mean(0).numpy()
    se = np.sqrt(probs.numpy() * (1 - probs.numpy()) / n)
    assert np.all(np.abs(freq - probs.numpy()) <= z_threshold(freq.size) * se + 1e-12)


def test_log_prob_is_the_sum_of_token_log_probs_and_lengths_count_eos():
    problem = make()
    params = repeat_params(problem.init_params(), 3, requires_grad=False)
    dist = problem.distribution(params)
    z = torch.tensor([[0, 1, 2], [2, 2, 2], [1, 1, 1]]).reshape(3, 1, 1, 3).expand(3, 3, 2, 3)
    tokens = problem.token_log_probs(dist, z)  # [K, R, P, L]
    assert torch.equal(problem.log_prob_terms(dist, z), tokens.sum(-1))
    assert problem.lengths(z)[:, 0, 0].tolist() == [3.0, 1.0, 3.0]
    # uniform over 3 tokens at the start: log(1/3) per token of the response, 0 after it
    assert torch.allclose(tokens[1, 0, 0], torch.tensor([-np.log(3), 0, 0], dtype=F64))
    assert torch.allclose(tokens[0, 0, 0], torch.full((3,), -np.log(3), dtype=F64))


def test_rewards_follow_the_rule():
    z = torch.tensor([[1, 0, 2], [0, 2, 2], [2, 0, 0], [1, 1, 1]]).unsqueeze(1)  # [4, P=1, L]
    contains = make(prompts=1).rewards(z)[:, 0].tolist()  # target token 0
    first = make(prompts=1, rule="first").rewards(z)[:, 0].tolist()
    assert contains == [1.0, 1.0, 0.0, 0.0]  # the 0s after EOS do not count
    assert first == [0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("param", ["tabular", "mlp"])
def test_enumerated_gradient_matches_finite_differences(param):
    problem = make(param=param, eos_logit=0.3)
    point = {k: v + 0.3 * torch.randn_like(v) for k, v in problem.init_params().items()}
    truth = problem.truth(point)
    assert truth.kind == "enumeration"
    h = 1e-6
    for name, value in point.items():
        for index in torch.randperm(value.numel())[:5].tolist():
            up, down = ({k: v.clone() for k, v in point.items()} for _ in range(2))
            up[name].view(-1)[index] += h
            down[name].view(-1)[index] -= h
            diff = (problem.objective(repeat_params(up, 1)) -
                    problem.objective(repeat_params(down, 1))).item() / (2 * h)
            assert diff == pytest.approx(truth.grad[name].view(-1)[index].item(), abs=1e-8)


def test_length_one_is_a_contextual_bandit_with_closed_form_gradient():
    """At L = 1 a response is one token (an arm; EOS is the empty response), pi =
    softmax(theta_p), and dE[-r]/dtheta_pa = -pi_a (r_a - sum_b pi_b r_b)."""
    problem = get_problem("policy")({"vocab": 3, "length": 1, "prompts": 3}, dtype=F64)
    logits = torch.randn(3, 1, 4, dtype=F64)
    truth = problem.truth({"logits": logits}).grad["logits"][:, 0]  # [P, V + 1]
    pi = torch.softmax(logits[:, 0], -1)
    reward = torch.nn.functional.one_hot(torch.arange(3), 4).to(F64)  # arm a_p = p is right
    closed = -pi * (reward - (pi * reward).sum(-1, keepdim=True))
    assert torch.allclose(truth, closed, atol=1e-14)


def test_without_enumeration_the_truth_is_none_or_a_reference():
    problem = make(max_configs=10)
    assert Capability.EXACT_OBJECTIVE not in problem.provided
    assert problem.truth_of(problem.option_values).kind == "none"
    assert problem.truth(problem.init_params()) is None
    assert problem.exact_statistics(problem.init_params()) == {}
    reference = problem.truth_of({**problem.option_values, "truth": "reference"})
    assert reference.kind == "reference" and get_estimator(reference.estimator).unbiased


SCORE_FUNCTION = ["reinforce", "reinforce_loo", "reinforce_ema", "nvil",
                  "reinforce_exact_baseline", "reinforce_optimal_baseline"]


@pytest.mark.parametrize("name", SCORE_FUNCTION)
def test_score_function_estimators_match_the_enumerated_gradient(name):
    """NVIL's normalization is inactive here (a 0/1 reward's centred signal has std < 1)."""
    problem = make(eos_logit=-0.5)
    options = {"warmup": 20} if name in ("reinforce_ema", "nvil") else {}
    estimates = draw_estimates(problem, get_estimator(name)(options), 4, 20_000)
    result = compare(estimates, flat_truth(problem))
    result.guard()
    assert result.consistent, f"max |z| = {np.abs(result.z_scores).max():.2f}"


def test_relaxed_and_other_estimators_are_skipped_with_a_reason():
    problem = make()
    runs = {n for n, e in ESTIMATORS.items() if e.incompatibility(problem) is None}
    assert set(SCORE_FUNCTION) | {"grpo", "dr_grpo"} <= runs
    assert "unordered_set" in runs  # enumerable responses (tests/test_unordered_set_policy.py)
    for name in ("gumbel_softmax", "straight_through", "reparam", "arm", "rebar", "vimco"):
        reason = ESTIMATORS[name].incompatibility(problem)
        assert reason is not None and "policy" in reason, name


def test_exact_statistics_match_sampling():
    problem = make(eos_logit=-1.0)
    stats = problem.exact_statistics(problem.init_params())
    z = problem.distribution(repeat_params(problem.init_params(), 1, False)).sample((50_000,))
    reward, length = problem.rewards(z), problem.lengths(z)
    wrong = (1 - reward)
    measured = {
        "expected_reward": reward.mean().item(),
        "mean_length": length.mean().item(),
        "length_incorrect": ((length * wrong).sum((0, 1)) / wrong.sum((0, 1))).mean().item(),
    }
    for key, value in measured.items():
        assert value == pytest.approx(stats[key], abs=0.02), key


def test_bench_train_records_reward_length_and_variance(tmp_path):
    from bench.training.train import make_spec, run_training

    spec = make_spec("policy", "grpo,reinforce_loo", steps=4, eval_every=2, n_samples=4,
                     variance_repeats=20, lr=0.05, dtype="float64")
    table = run_training(spec, tmp_path / "train", progress=False)
    metrics = set(table["metric"])
    assert {"expected_reward", "mean_length", "length_incorrect", "variance_trace"} <= metrics
    start = make().exact_statistics(make().init_params())
    first = table[(table.step == 0) & (table.metric == "expected_reward")]["value"]
    assert first.tolist() == pytest.approx([start["expected_reward"]] * 2, rel=1e-12)


def test_sampled_training_metrics_where_enumeration_is_too_large():
    problem = make(max_configs=10)
    metrics = problem.train_metrics(problem.init_params())
    exact = make().exact_statistics(make().init_params())
    assert set(metrics) == {"expected_reward", "mean_length"}
    for key, value in metrics.items():  # 2 prompts x 4096 responses: se < 0.01
        assert value == pytest.approx(exact[key], abs=0.04), key


def test_bench_train_refuses_ddof_at_least_k():
    from bench.training.train import make_spec

    with pytest.raises(ValueError, match="needs ddof < K"):
        make_spec("policy", "grpo", ["ddof=4"], n_samples=4)
