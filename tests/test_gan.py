"""Tests of the GAN-critic problems: exact truth, estimator bias, the critic, diagnostics."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bench.cell.run import run_cell
from bench.sweep.spec import SweepSpec, expand
from bench.training.train import make_spec, train_one
from estimators import ESTIMATORS
from estimators.base import flatten
from problems import PROBLEMS
from problems.base import repeat_params
from problems.gan_critic import GanContinuous
from problems.gan_discrete import GanDiscrete
from problems.gan_parts import NoisyGenerator
from problems.gan_quadrature import SPACING, grid_quadrature_gradient
from tests.stats import compare, draw_estimates, flat_truth

SMALL_CRITIC = {"critic_width": 16, "critic_steps": 100}


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run many ops on tiny tensors, dominated by per-op overhead that intra-op
    threads only add to (by 10x and more on a loaded 2-core machine): use one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def brute_force_discrete_grad(problem: GanDiscrete) -> torch.Tensor:
    """dL/dlogits by looping over every pack, with the softmax score written out by hand:
    d log q(pack) / d logits[l, v] = sum_i (1{x_il = v} - p_lv)."""
    logits = problem.init_params()["logits"].double()
    probs = torch.softmax(logits, -1)  # [L, V]
    length, vocab = logits.shape
    eye = torch.eye(vocab, dtype=torch.float64)
    grad = torch.zeros_like(logits)
    for tokens in itertools.product(range(vocab), repeat=problem.pack * length):
        seqs = torch.tensor(tokens).reshape(problem.pack, length)  # [m, L]
        q = math.prod(
            probs[pos, seqs[i, pos]].item() for i in range(problem.pack) for pos in range(length)
        )
        z = eye[seqs].reshape(1, 1, problem.pack * length, vocab).to(problem.dtype)
        f = problem.cost(z, {}).item()
        score = (eye[seqs] - probs).sum(0)  # [L, V]
        grad += q * f * score
    return grad


@pytest.mark.parametrize("pack", [1, 2])
def test_enumeration_truth_matches_brute_force(pack: int) -> None:
    problem = GanDiscrete({"length": 2, "vocab": 3, "modes": 2, "pack": pack, **SMALL_CRITIC})
    truth = problem.truth(problem.init_params())
    assert truth is not None and truth.kind == "enumeration"
    expected = brute_force_discrete_grad(problem)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(truth.grad["logits"].double(), expected, rtol=1e-4, atol=1e-6)


def test_truth_option_controls_enumeration() -> None:
    big = {"length": 9, "vocab": 4, **SMALL_CRITIC}  # 4^9 > 2^16
    assert GanDiscrete(big).truth(GanDiscrete(big).init_params()) is None
    reference = GanDiscrete({"truth": "reference", **SMALL_CRITIC})
    assert reference.truth(reference.init_params()) is None
    with pytest.raises(ValueError, match="exceed max_configs"):
        GanDiscrete({"truth": "enumeration", **big})
    with pytest.raises(ValueError, match="modes"):
        GanDiscrete({"length": 1, "vocab": 2, "modes": 3})
    with pytest.raises(ValueError, match="loss"):
        GanDiscrete({"loss": "hinge"})


def unbiased_for(problem) -> list[str]:
    return [
        name for name, cls in ESTIMATORS.items()
        if cls.unbiased and cls.incompatibility(problem) is None
    ]


DISCRETE_CASES = [
    {},
    {"loss": "wgan", "lipschitz": "gp", "activation": "leaky_relu", "pack": 2},
]


@pytest.mark.parametrize("options", DISCRETE_CASES, ids=["gan", "wgan_gp_leaky_pack2"])
def test_discrete_unbiased_estimators_match_enumeration(options: dict) -> None:
    problem = GanDiscrete(options)
    truth = flat_truth(problem)
    names = unbiased_for(problem)
    assert {"reinforce", "reinforce_loo", "reinforce_ema"} <= set(names)
    for name in names:
        estimates = draw_estimates(problem, ESTIMATORS[name](), n_samples=8, n_repeats=5000)
        result = compare(estimates, truth)
        result.guard()
        assert result.consistent, f"{name}: z-scores {result.z_scores}"


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel_softmax", "straight_through"])
def test_discrete_relaxed_estimators_are_biased(name: str) -> None:
    problem = GanDiscrete()
    truth = flat_truth(problem)
    result = compare(draw_estimates(problem, ESTIMATORS[name](), 8, 2000), truth)
    result.guard()
    assert not result.consistent, f"{name} was expected to be biased on {problem.name}"


def quadrature_truth(problem: GanContinuous, spacing: float = SPACING) -> np.ndarray:
    """The grid quadrature of ``problems.gan_quadrature`` at ``spacing``, flattened like
    ``draw_estimates``."""
    grad = grid_quadrature_gradient(problem, problem.init_params(), spacing)
    return flatten(grad, repeated=False).numpy()


CONTINUOUS_TINY = {"noise_dim": 1, "gen_width": 4, "activation": "leaky_relu", **SMALL_CRITIC}


def test_continuous_quadrature_converged() -> None:
    problem = GanContinuous(CONTINUOUS_TINY)
    coarse, fine = quadrature_truth(problem, 0.02), quadrature_truth(problem, 0.01)
    assert np.abs(coarse - fine).max() < 1e-4 * np.abs(fine).max()


def test_continuous_estimator_coverage() -> None:
    # plain REINFORCE is unbiased here too, but its variance (~ E[f^2] / s^2) needs more than
    # 10^6 repeats for a test with power; it is tested on gan_discrete
    # LAX (tests/test_lax.py) and the optimal baseline (tests/test_group.py) are tested on the
    # toys against closed forms
    tested_elsewhere = {"reinforce", "lax", "reinforce_optimal_baseline"}
    assert set(unbiased_for(GanContinuous)) == {*CONTINUOUS_UNBIASED, *tested_elsewhere}


CONTINUOUS_UNBIASED = ["reparam", "reinforce_loo", "reinforce_ema"]


@pytest.mark.parametrize("name", CONTINUOUS_UNBIASED)
def test_continuous_unbiased_estimators_match_quadrature(name: str) -> None:
    """The independent check of the reparam reference: against quadrature, not itself."""
    problem = GanContinuous({**CONTINUOUS_TINY, "truth": "quadrature"})
    truth = flat_truth(problem)
    np.testing.assert_allclose(truth, quadrature_truth(problem), rtol=1e-6, atol=1e-9)
    result = compare(draw_estimates(problem, ESTIMATORS[name](), 8, 20000), truth)
    result.guard()
    assert result.consistent, f"{name}: z-scores {result.z_scores}"


def test_noisy_generator_log_prob_by_hand() -> None:
    problem = GanContinuous({"pack": 2, **SMALL_CRITIC})
    params = repeat_params(problem.init_params(), 3, False)
    dist = problem.distribution(params)
    z = dist.sample((5,))  # [K, R, m, k + d]
    assert z.shape == (5, 3, 2, 4) and dist.log_prob(z).shape == (5, 3)
    p = {k: v[0] for k, v in params.items()}
    eps, x = z[..., :2], z[..., 2:]
    centre = torch.tanh(eps @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    s = problem.option_values["output_std"]
    by_hand = (
        torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum((-1, -2))
        + torch.distributions.Normal(centre, s).log_prob(x).sum((-1, -2))
    )
    torch.testing.assert_close(dist.log_prob(z), by_hand, rtol=1e-5, atol=1e-4)


def test_noisy_generator_rsample_is_pathwise() -> None:
    problem = GanContinuous(SMALL_CRITIC)
    params = repeat_params(problem.init_params(), 2)
    z = problem.distribution(params).rsample((4,))
    assert isinstance(problem.distribution(params), NoisyGenerator)
    (grad,) = torch.autograd.grad(z[..., 2:].sum(), params["b2"])
    torch.testing.assert_close(grad, torch.full_like(grad, 4.0))


@pytest.mark.parametrize("name", ["gan_continuous", "gan_discrete"])
def test_critic_deterministic_under_seed_and_leaves_global_rng(name: str) -> None:
    torch.manual_seed(7)
    first = PROBLEMS[name](SMALL_CRITIC)
    critic_first = first.critic.state()
    after_first = torch.rand(3)
    torch.manual_seed(7)
    second = PROBLEMS[name](SMALL_CRITIC).critic.state()
    torch.testing.assert_close(torch.rand(3), after_first)
    for a, b in zip(critic_first, second, strict=True):
        assert torch.equal(a, b)
    other = PROBLEMS[name]({"seed": 1, **SMALL_CRITIC}).critic.state()
    assert not torch.equal(critic_first[0], other[0])
    assert first.critic is first.critic  # cached


@pytest.mark.parametrize("name", ["gan_continuous", "gan_discrete"])
def test_lipschitz_methods(name: str) -> None:
    base = {"loss": "wgan", **SMALL_CRITIC}
    clipped = PROBLEMS[name]({**base, "lipschitz": "clip", "clip": 0.05})
    assert all(p.abs().max() <= 0.05 for p in clipped.critic.parameters())
    clip_l = clipped.diagnostics(clipped.init_params())["critic_lipschitz"]
    width = clipped.option_values["critic_width"]
    # prod_layers ||W||_F >= prod ||W||_2 >= Lipschitz constant, with |W_ij| <= c
    assert clip_l <= 0.05**3 * width**2 * math.sqrt(clipped.features)
    penalised = PROBLEMS[name]({**base, "lipschitz": "gp"})
    assert 0.5 < penalised.diagnostics(penalised.init_params())["critic_lipschitz"] < 2


@pytest.mark.parametrize("name", ["gan_continuous", "gan_discrete"])
def test_packing_shapes_and_cost(name: str) -> None:
    problem = PROBLEMS[name]({"pack": 3, **SMALL_CRITIC})
    params = repeat_params(problem.init_params(), 2, False)
    z = problem.distribution(params).sample((5,))
    assert problem.critic_input(z).shape == (5, 2, 3 * problem.features)
    assert problem.cost(z, params).shape == (5, 2)
    assert problem.critic.weights[0].shape[0] == 3 * problem.features
    packs = problem.generator_packs(problem.init_params(), 4)
    assert packs.shape == (4, 3 * problem.features)


def test_diagnostics_definitions() -> None:
    problem = GanDiscrete(SMALL_CRITIC)
    point = problem.init_params()
    diag = problem.diagnostics(point)
    assert set(diag) == {"critic_dead_fraction", "critic_lipschitz"}
    assert tuple(diag) == GanDiscrete.diagnostic_columns == GanContinuous.diagnostic_columns
    assert 0 <= diag["critic_dead_fraction"] <= 1 and diag["critic_lipschitz"] > 0
    assert diag == problem.diagnostics(point)  # fixed evaluation samples
    with torch.no_grad():
        problem.critic.biases[0].fill_(-1e3)  # every first-layer unit off on one-hot inputs
        problem.critic.biases[1].fill_(1.0)  # so every second-layer unit is on
    width = problem.option_values["critic_width"]
    assert problem.diagnostics(point)["critic_dead_fraction"] == pytest.approx(width / (2 * width))


def test_discrete_total_variation_and_coverage() -> None:
    problem = GanDiscrete({"length": 3, "vocab": 3, "modes": 2, **SMALL_CRITIC})
    logits = problem.init_params()["logits"]
    probs = torch.softmax(logits.double(), -1)
    tv = 0.0
    for tokens in itertools.product(range(3), repeat=3):
        seq = torch.tensor([tokens])
        q = math.prod(probs[pos, tokens[pos]].item() for pos in range(3))
        tv += abs(q - problem.target_log_prob(seq).exp().item())
    assert problem.total_variation({"logits": logits}) == pytest.approx(tv / 2, rel=1e-6)
    collapsed = 20 * torch.nn.functional.one_hot(problem.prototypes[0], 3).double()
    assert problem.mode_coverage({"logits": collapsed}) == 1
    assert problem.total_variation({"logits": collapsed}) > 0.4


def test_continuous_coverage() -> None:
    problem = GanContinuous(SMALL_CRITIC)
    target = problem.target_draws(4000)
    assert problem.mode_coverage(target, problem.target_draws(4000)) == 8
    one_mode = problem.centres[:1] + 0.05 * torch.randn(4000, 2)
    assert problem.mode_coverage(one_mode, target) == 1


def test_before_step_trains_the_critic_on_shared_real_batches() -> None:
    problem = GanDiscrete({"critic_updates": 2, **SMALL_CRITIC})
    before = problem.critic.state()
    problem.before_step(problem.init_params(), 1, torch.Generator().manual_seed(0))
    assert problem.critic.steps == SMALL_CRITIC["critic_steps"] + 2
    assert not torch.equal(before[0], problem.critic.state()[0])
    first = problem.target_packs(5, torch.Generator().manual_seed(3))
    assert torch.equal(first, problem.target_packs(5, torch.Generator().manual_seed(3)))


def curves(name: str, estimator: str, steps: int, lr: float, n_samples: int) -> dict:
    spec = make_spec(
        name, estimator, steps=steps, eval_every=steps, lr=lr, n_samples=n_samples,
        variance_repeats=2,
    )
    rows = train_one(PROBLEMS[name](spec.problem_options), estimator, {}, spec, progress=False)
    out: dict = {}
    for row in rows:
        out.setdefault(row["metric"], {})[row["step"]] = row["value"]
    return out


def test_training_on_the_ring_covers_more_modes() -> None:
    metrics = curves("gan_continuous", "reparam", steps=500, lr=2e-3, n_samples=32)
    assert metrics["modes_covered"][500] > metrics["modes_covered"][0]
    assert metrics["energy_distance"][500] < metrics["energy_distance"][0]
    assert {"variance_trace", "critic_dead_fraction", "critic_lipschitz"} <= set(metrics)


def test_discrete_training_reduces_total_variation() -> None:
    metrics = curves("gan_discrete", "reinforce_loo", steps=200, lr=1e-2, n_samples=8)
    assert metrics["total_variation"][200] < metrics["total_variation"][0] - 0.1
    assert metrics["modes_covered"][200] >= 1


def test_digits_target() -> None:
    problem = GanDiscrete({"target": "digits", **SMALL_CRITIC})
    point = problem.init_params()
    assert point["logits"].shape == (64, 2) and problem.images.shape == (1797, 64)
    assert set(problem.images.unique().tolist()) == {0, 1}
    assert problem.truth(point) is None  # 2^64 packs: auto gives up
    assert math.isnan(problem.total_variation(point))
    draws = problem.target_draws(5)
    assert draws.shape == (5, 128) and torch.equal(draws.sum(-1), torch.full((5,), 64.0))
    assert problem.mode_shares(problem.images).sum() > 0.5
    collapsed = 20 * torch.nn.functional.one_hot(problem.prototypes[3], 2).float()
    assert problem.mode_coverage({"logits": collapsed}) == 1
    params = repeat_params(point, 2, False)
    assert problem.cost(problem.distribution(params).sample((3,)), params).shape == (3, 2)


@pytest.mark.parametrize("name", ["gan_continuous", "gan_discrete"])
def test_the_snapshot_is_the_same_in_every_dtype(name):
    """Initial generator and trained critic do not depend on the cell's dtype."""
    single = PROBLEMS[name]({"critic_steps": 20}, dtype=torch.float32)
    double = PROBLEMS[name]({"critic_steps": 20}, dtype=torch.float64)
    for key, value in double.init_params().items():
        torch.testing.assert_close(single.init_params()[key].double(), value, rtol=1e-6, atol=1e-7)
    for a, b in zip(single.critic.parameters(), double.critic.parameters(), strict=True):
        torch.testing.assert_close(a.detach().double(), b.detach(), rtol=1e-6, atol=1e-7)


def test_quadrature_truth_needs_one_noise_coordinate_and_no_packing() -> None:
    with pytest.raises(ValueError, match=r"truth=quadrature .* noise_dim=1 and pack=1"):
        GanContinuous({"truth": "quadrature", "noise_dim": 2, **SMALL_CRITIC})
    with pytest.raises(ValueError, match=r"pack=2"):
        GanContinuous({**CONTINUOUS_TINY, "truth": "quadrature", "pack": 2})


def test_reparam_against_its_own_reference_is_flagged_and_checked_elsewhere() -> None:
    """A reparam cell on the reparam reference compares the estimator with itself: the cell
    says so (``reason``), other estimators' cells do not, and the declaration names the
    independent check (truth=quadrature, tested above)."""
    sweep = SweepSpec(estimators=("reparam", "reinforce_loo"), problems=("gan_continuous",),
                      samples=(2,), repeats=16, n_bootstrap=0,
                      settings=(("critic_steps", ("2",)), ("critic_width", ("8",))))
    rows = {cell.estimator: run_cell(cell)[0] for cell in expand(sweep)}
    assert rows["reparam"]["status"] == "ok" and rows["reparam"]["truth"] == "reference"
    assert rows["reparam"]["reason"].startswith("reference is the estimator itself (reparam)")
    assert "truth=quadrature" in rows["reparam"]["reason"]
    assert rows["reinforce_loo"]["status"] == "ok" and rows["reinforce_loo"]["reason"] is None
    source = GanContinuous.truth_of()
    assert source.self_reference("reparam") and source.self_reference("reinforce_loo") is None
    assert GanContinuous.truth_of({"truth": "quadrature"}).self_reference("reparam") is None
