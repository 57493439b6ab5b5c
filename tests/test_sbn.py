"""sbn: the layered prior is normalized, the enumerated truth equals a brute-force ELBO written
independently, estimators agree with it, oversized enumerations are refused, and training
reports test bounds."""

import itertools
import math

import pytest
import torch
from torch.distributions import Bernoulli

from estimators import get_estimator
from problems import get_problem
from problems.base import repeat_params
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64
TINY = {"layers": "2-2", "batch": 2}


def build(**options):
    return get_problem("sbn")(TINY | options, dtype=F64)


def brute_force_nelbo(problem, params, x):
    """sum over each image's joint configurations of q(z | x) [log q - log p(x, z)], the
    model written out layer by layer with torch's Bernoulli (linear, two layers)."""
    full = problem.decoder | params
    widths = problem.widths
    total = x.new_zeros(())
    for i in range(x.shape[0]):
        q = Bernoulli(logits=x[i] @ full["encoder.0.weight"] + full["encoder.0.bias"])
        for bits in itertools.product((0.0, 1.0), repeat=sum(widths)):
            z = torch.tensor(bits, dtype=F64)
            z1, z2 = z[: widths[0]], z[widths[0]:]
            log_p = Bernoulli(logits=full["decoder.prior"]).log_prob(z2).sum()
            log_p += Bernoulli(logits=z2 @ full["decoder.z1.0.weight"]
                               + full["decoder.z1.0.bias"]).log_prob(z1).sum()
            log_p += Bernoulli(logits=z1 @ full["decoder.x.0.weight"]
                               + full["decoder.x.0.bias"]).log_prob(x[i]).sum()
            log_q = q.log_prob(z).sum()
            total = total + log_q.exp() * (log_q - log_p)
    return total / x.shape[0]


def perturbed(problem, scale=0.5):
    """The evaluation point and decoder moved off their initialization (zero biases would
    hide a mixed-up layer)."""
    generator = torch.Generator().manual_seed(1)
    problem.decoder = {k: v + scale * torch.randn(v.shape, generator=generator, dtype=F64)
                       for k, v in problem.decoder.items()}
    return {k: v + 0.3 * torch.randn(v.shape, generator=generator, dtype=F64)
            for k, v in problem.init_params().items()}


def test_the_layered_prior_is_normalized():
    problem = build(layers="2-1-2", arch="mlp", hidden="3")
    perturbed(problem)
    configs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=5)), dtype=F64)
    z = configs[:, None, None]  # [32, R = 1, B = 1, 5]
    mass = problem.log_prior(z, {}).exp().sum()
    assert mass.item() == pytest.approx(1.0, rel=1e-12)


def test_enumerated_objective_and_gradient_equal_brute_force():
    problem = build()
    point = perturbed(problem)
    leaf = {k: v.clone().requires_grad_(True) for k, v in point.items()}
    exact = brute_force_nelbo(problem, leaf, problem.x)
    objective = problem.objective(repeat_params(point, 1, False))
    assert objective.item() == pytest.approx(exact.item(), rel=1e-12)
    grads = torch.autograd.grad(exact, list(leaf.values()))
    truth = problem.truth(point)
    assert truth.kind == "enumeration"
    for (name, value), grad in zip(truth.grad.items(), grads, strict=True):
        torch.testing.assert_close(value, grad, rtol=1e-10, atol=1e-12, msg=name)


def test_the_iwae_truth_equals_brute_force_over_pairs():
    """K = 2: -E log (w_1 + w_2) / 2 over the 2^2 x 2^2 pairs of one image's configurations."""
    problem = build(layers="1-1", batch=1, objective="iwae")
    point = perturbed(problem)
    params = repeat_params(point, 1, False)
    configs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=2)), dtype=F64)
    z = configs[:, None, None]  # [4, 1, 1, 2]
    log_w = -problem.per_image_cost(z, params, problem.x, 1.0)[:, 0, 0]
    log_q = problem._log_mass(z, problem.encode(params, problem.x))[:, 0, 0]
    bound = sum(math.exp(log_q[a] + log_q[b])
                * -(torch.logaddexp(log_w[a], log_w[b]) - math.log(2)).item()
                for a in range(4) for b in range(4))
    assert problem.objective(params, 2).item() == pytest.approx(bound, rel=1e-12)


@pytest.mark.parametrize(("name", "k", "unbiased"), [
    ("reinforce_loo", 4, True), ("disarm", 4, True), ("arm", 4, True), ("rebar", 4, True),
    ("straight_through", 4, False),
])
def test_estimators_against_the_enumerated_truth(name, k, unbiased):
    problem = build(arch="mlp", hidden="3")
    options = {"warmup": 0} if name == "rebar" else {}
    result = compare(draw_estimates(problem, get_estimator(name)(options), k, 4000),
                     flat_truth(problem))
    result.guard()
    assert result.consistent == unbiased


def test_oversized_enumeration_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"layers=200-200-200 have 2\^600 joint configurations "
                                         r"per image, more than max_configs=65,536"):
        get_problem("sbn")({"layers": "200-200-200", "truth": "enumeration",
                            "data": "/nonexistent"})
    with pytest.raises(ValueError, match="1 to 3 positive integers"):
        get_problem("sbn")({"layers": "2-2-2-2"})
    with pytest.raises(ValueError, match="4500 units in all, expected at most 4096"):
        get_problem("sbn")({"layers": "1500-1500-1500"})


def test_wide_layers_run_without_truth():
    problem = get_problem("sbn")({"layers": "200-200", "batch": 4})
    assert problem.truth(problem.init_params()) is None
    torch.manual_seed(0)
    step = get_estimator("disarm")().step(problem, repeat_params(problem.init_params(), 2), 2,
                                          {}, train=False)
    assert all(torch.isfinite(g).all() for g in step.grads.values())


def test_training_reports_the_test_bounds():
    from bench.training.train import make_spec, run_training

    spec = make_spec("sbn", ["disarm"], [f"layers={TINY['layers']}"], steps=20, eval_every=10,
                     lr=0.01, n_samples=2, variance_repeats=10)
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        rows = run_training(spec, out, progress=False)
    metrics = set(rows["metric"])
    assert {"test_nelbo", "test_iwae", "train_loss", "variance_trace"} <= metrics
    final = rows[rows.step == 20].set_index("metric")["value"]
    assert final["test_iwae"] <= final["test_nelbo"] + 1e-6  # the 100-sample bound is tighter


def unbiased_binary_estimators():
    from estimators import ESTIMATORS

    sbn = get_problem("sbn")
    return [name for name, cls in ESTIMATORS.items()
            if cls.unbiased and cls.incompatibility(sbn, TINY) is None]


@pytest.mark.slow
@pytest.mark.parametrize("name", unbiased_binary_estimators())
def test_every_unbiased_binary_estimator_matches_the_enumerated_truth(name):
    from tests.examples import ESTIMATOR_EXAMPLES

    example = ESTIMATOR_EXAMPLES[name]
    problem = build(arch="mlp", hidden="3")
    problem.initial |= perturbed(problem, 2.0)  # a decoder that depends on z: a large truth
    result = compare(draw_estimates(problem, get_estimator(name)(example.get("options", {})),
                                    example["n_samples"], 20_000), flat_truth(problem))
    result.guard()
    assert result.consistent
