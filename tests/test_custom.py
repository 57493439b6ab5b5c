"""problems.from_callable: inferred capabilities, truth against closed forms, bad input, and the
harness and CLI applied to a user's problem."""

import math

import pandas as pd
import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Cauchy,
    Gamma,
    Normal,
    OneHotCategorical,
    Uniform,
)

from bench.cell.truth import cell_truth
from estimators import ESTIMATORS, get_estimator
from problems import from_callable, get_problem
from problems.base import Capability, LatentKind
from problems.truth import TruthSource
from tests.stats import compare, draw_estimates, flat_truth

F64 = torch.float64


def quadratic(z, params):
    return ((z - 0.45) ** 2).mean(-1)


def bits_problem(theta=(1.0, 1.0)):
    return from_callable("user_bits", Bernoulli, {"logits": torch.tensor(theta)}, quadratic)


def test_bits_are_bernoulli_toy_with_enumerated_truth():
    cls = bits_problem((1.0, -0.5))
    assert cls.latent is LatentKind.BINARY and cls.truth_of() == TruthSource.enumeration(4)
    assert cls.provides == get_problem("bernoulli_toy").provides
    problem = cls(dtype=F64)
    truth = problem.truth(problem.init_params())
    assert truth.kind == "enumeration"
    p = torch.sigmoid(torch.tensor([1.0, -0.5], dtype=F64))
    torch.testing.assert_close(truth.grad["logits"], p * (1 - p) * 0.1 / 2, rtol=1e-12, atol=0)
    toy = get_problem("bernoulli_toy")
    assert [n for n, e in ESTIMATORS.items() if e.incompatibility(cls) is None] == [
        n for n, e in ESTIMATORS.items() if e.incompatibility(toy) is None]


def test_one_hot_truth_matches_the_closed_form():
    """E f = sum_c p_c v_c for f = <z, v>: the gradient w.r.t. the logits is p_c (v_c - E f)."""
    values = torch.tensor([0.0, 1.0, 3.0], dtype=F64)
    cls = from_callable("user_cat", OneHotCategorical, {"logits": [[0.2, -0.4, 1.0]]},
                        lambda z, p: (z @ values.to(z)).sum(-1))
    problem = cls(dtype=F64)
    assert cls.latent is LatentKind.CATEGORICAL and Capability.DIFFERENTIABLE_COST in cls.provides
    probs = torch.softmax(torch.tensor([0.2, -0.4, 1.0], dtype=F64), -1)
    expected = probs * (values - (probs * values).sum())
    truth = problem.truth(problem.init_params()).grad["logits"][0]
    torch.testing.assert_close(truth, expected, rtol=1e-12, atol=0)


CONTINUOUS = [
    # (family, parameters, cost, closed-form gradient in the parameters' order)
    (Normal, {"loc": [1.0], "scale": [1.5]}, lambda z, p: ((z + 0.5) ** 2).sum(-1), (3.0, 3.0)),
    (Gamma, {"concentration": 0.5, "rate": 2.0}, lambda z, p: (z - 0.3) ** 2,
     (1 / 4 + 2 * (0.25 - 0.3) / 2, -2 * 0.5 / 8 - 2 * (0.25 - 0.3) * 0.5 / 4)),
    # a support that moves with theta: d/dlow E[z^2] = (high + 2 low) / 3
    (Uniform, {"low": 0.5, "high": 2.0}, lambda z, p: z**2, (1.0, 1.5)),
    (Beta, {"concentration1": 0.5, "concentration0": 0.7}, lambda z, p: z,
     (0.7 / 1.2**2, -0.5 / 1.2**2)),
    # a cost that depends on theta directly: E[(z - loc)^2] = scale^2
    (Normal, {"loc": 0.3, "scale": 0.8}, lambda z, p: (z - p["loc"]) ** 2, (0.0, 1.6)),
]


@pytest.mark.parametrize(("family", "params", "cost", "exact"), CONTINUOUS,
                         ids=["normal", "gamma", "uniform", "beta", "direct"])
def test_one_dimensional_quadrature_matches_closed_forms(family, params, cost, exact):
    problem = from_callable("user_line", family, params, cost)(dtype=F64)
    assert problem.truth_of(problem.option_values) == TruthSource.quadrature()
    truth = problem.truth(problem.init_params())
    assert truth.kind == "quadrature"
    for value, (name, grad) in zip(exact, truth.grad.items(), strict=True):
        assert grad.reshape(()).item() == pytest.approx(value, abs=2e-9), name


def test_quadrature_refuses_tails_it_cannot_reach():
    """A Cauchy's mass beyond 1100 scales is about 6e-4: the truth is refused, not wrong."""
    problem = from_callable("user_cauchy", Cauchy, {"loc": 0.0, "scale": 0.5},
                            lambda z, p: torch.sigmoid(z))(dtype=F64)
    assert problem.truth(problem.init_params()) is None


def test_unbiased_estimators_match_the_quadrature_truth():
    """The quadrature truth is what the harness compares with: two unbiased estimators agree
    with it to their standard errors (the closed form is in the gamma case above)."""
    problem = from_callable("user_gamma", Gamma, {"concentration": 2.0, "rate": 1.5},
                            lambda z, p: (z - 1.0) ** 2)(dtype=F64)
    for name in ("reparam", "reinforce_loo"):
        result = compare(draw_estimates(problem, get_estimator(name)(), 4, 20_000),
                         flat_truth(problem))
        result.guard()
        assert result.consistent, name


def test_vector_continuous_latents_get_a_reference_truth():
    cls = from_callable("user_vector", Normal, {"loc": [0.5, -1.0], "scale": [1.0, 2.0]},
                        lambda z, p: (z**2).sum(-1))
    assert cls.truth_of() == TruthSource.reference("reparam")
    assert Capability.GAUSSIAN in cls.provides
    problem = cls({"reference_repeats": 400}, dtype=F64)
    truth = cell_truth(problem, problem.init_params(), seed=0)
    assert truth.kind == "reference"
    z = (truth.grad["loc"] - torch.tensor([1.0, -2.0], dtype=F64)) / truth.se["loc"]
    assert z.abs().max() < 4


@pytest.mark.parametrize(("cost", "message"), [
    (lambda z, p: z, r"shape \[2, 1, 3\] .*expected a torch.float64 tensor of shape "
                     r"\[K, R\] = \[2, 1\]"),
    (lambda z, p: z.sum(-1) > 0, r"torch.bool tensor of shape \[2, 1\]"),
    (lambda z, p: z.sum(-1).float(), r"torch.float32 .*expected a torch.float64"),
    (lambda z, p: 1.0, r"returned a float .*shape \[K, R\]"),
])
def test_a_cost_of_the_wrong_shape_or_dtype_is_one_line(cost, message):
    with pytest.raises(ValueError, match=message) as err:
        from_callable("bad", Bernoulli, {"logits": torch.zeros(3)}, cost)
    assert "\n" not in str(err.value)


def test_bad_distributions_and_names_are_refused():
    with pytest.raises(ValueError, match="must be Bernoulli or OneHotCategorical"):
        from_callable("bad", Categorical, {"logits": [[0.0, 1.0]]}, lambda z, p: z.float())
    with pytest.raises(ValueError, match=r"batch shape \[3\], expected it to start with .*R = 1"):
        from_callable("bad", lambda logits: Bernoulli(logits=logits[0]), {"logits": [0.0] * 3},
                      lambda z, p: z.sum(-1))
    with pytest.raises(ValueError, match=r"returned a int, expected a torch\.distributions"):
        from_callable("bad", lambda logits: 3, {"logits": [0.0]}, lambda z, p: z)
    with pytest.raises(ValueError, match="invalid problem name 'a,b'"):
        from_callable("a,b", Bernoulli, {"logits": [0.0]}, quadratic)


def test_the_factory_gets_only_the_parameters_it_names():
    """An encoder need not take the decoder's weights; the decoder's gradient then comes from
    the cost alone: d/dw E[(z - w)^2] = 2 (w - p)."""
    cls = from_callable("user_split", lambda logits: Bernoulli(logits=logits),
                        {"logits": [0.0], "w": [0.2]},
                        lambda z, p: ((z - p["w"].unsqueeze(0)) ** 2).sum(-1))
    problem = cls(dtype=F64)
    grad = problem.truth(problem.init_params()).grad
    assert grad["w"].item() == pytest.approx(2 * (0.2 - 0.5), rel=1e-12)
    assert grad["logits"].item() == pytest.approx(0.25 * (0.8**2 - 0.2**2), rel=1e-12)


def test_run_sweep_measures_a_user_problem(tmp_path):
    from bench import run_sweep

    table = run_sweep(["reinforce_loo", "disarm", "gumbel_softmax"], [bits_problem()],
                      samples=[4], repeats=200, bootstrap=0, out=tmp_path / "run",
                      progress=False, dtype="float64")
    assert set(table["status"]) == {"ok"} and set(table["truth"]) == {"enumeration"}


def test_cli_run_and_train_with_a_plugin(tmp_path, capsys):
    from bench.cli import main

    run = ["run", "--plugin", "tests.custom_plugin", "--problem", "plugin_bits,plugin_normal",
           "--estimator", "reinforce_loo,reparam", "--samples", "2", "--repeats", "50",
           "--bootstrap", "0", "--no-progress", "--out", str(tmp_path / "run")]
    assert main(run) == 0
    out = capsys.readouterr().out
    # the summary shows an exact truth as "exact"; its kind is in cells.parquet
    assert "plugin_normal" in out and "exact" in out
    truths = set(pd.read_parquet(tmp_path / "run" / "cells.parquet")["truth"])
    assert {"quadrature", "enumeration"} <= truths
    train = ["train", "--plugin", "tests.custom_plugin", "--problem", "plugin_normal",
             "--estimator", "reparam", "--steps", "20", "--eval-every", "10",
             "--variance-repeats", "10", "--no-progress", "--out", str(tmp_path / "train")]
    assert main(train) == 0
    assert (tmp_path / "train" / "train.parquet").is_file()


def test_quadrature_error_estimate_is_conservative_on_a_smooth_case():
    """At step 1/32 the Normal case is exact to rounding: the estimate says so."""
    from problems.line_quadrature import line_gradient

    loc = torch.tensor([1.0], dtype=F64, requires_grad=True)
    scale = torch.tensor([1.5], dtype=F64, requires_grad=True)
    grads, error = line_gradient(lambda: Normal(loc, scale), lambda z: (z + 0.5) ** 2,
                                 [loc, scale])
    assert error < 1e-12
    assert abs(grads[0].item() - 3.0) < 1e-12 and abs(grads[1].item() - 3.0) < 1e-12
    assert math.isfinite(error)


def test_the_docs_plugin_is_the_pages_model_and_runs_from_the_cli(tmp_path, capsys, monkeypatch):
    """docs/examples/tiny_vae.py holds the first block of docs/your_problem.md verbatim, and
    ``bench run --plugin tiny_vae`` from its folder measures it against enumeration."""
    import re
    from pathlib import Path

    from bench.cli import main

    docs = Path(__file__).resolve().parents[1] / "docs"
    block = re.findall(r"```python\n(.*?)```", (docs / "your_problem.md").read_text(),
                       flags=re.DOTALL)[0]
    assert block in (docs / "examples" / "tiny_vae.py").read_text()
    monkeypatch.chdir(docs / "examples")
    run = ["run", "--plugin", "tiny_vae", "--problem", "tiny_vae", "--estimator", "disarm",
           "--samples", "2", "--repeats", "20", "--bootstrap", "0", "--dtype", "float64",
           "--no-progress", "--out", str(tmp_path / "run")]
    assert main(run) == 0
    assert "exact" in capsys.readouterr().out
    assert set(pd.read_parquet(tmp_path / "run" / "cells.parquet")["truth"]) == {"enumeration"}


def test_a_plugin_with_a_bad_cost_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from bench.cli import main

    (tmp_path / "bad_cost.py").write_text(
        "import torch\nfrom torch.distributions import Bernoulli\nfrom problems import "
        "from_callable\nPROBLEMS = {'bad': from_callable('bad', Bernoulli, {'logits': "
        "torch.zeros(3)}, lambda z, params: z)}\n")
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--plugin", "bad_cost", "--problem", "bad", "--no-progress",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "expected a torch.float64 tensor of shape [K, R] = [2, 1]" in err
    assert len(err.splitlines()) == 1
