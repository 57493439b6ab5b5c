"""``bench verify`` for biased estimators: each is checked against its declared target, a
relaxed or straight-through estimator that does not compute what it declares fails, and one
with nothing checkable is not called VERIFIED; power per coordinate catches a sign error on
one small coordinate; common random numbers between two estimators; and an estimator that
exits, hangs or declares nonsense is reported, not trusted."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from bench.cli import main
from bench.verify import verify_one
from bench.verify.targets import compute
from estimators import ESTIMATORS, Surrogate
from estimators.base import flatten
from estimators.discrete import harden, mean_of, relax
from estimators.relaxed import GumbelSoftmax, StraightThrough
from estimators.score_function import ReinforceLOO
from estimators.targets import RelaxedGradient, StraightThroughMean
from problems import PROBLEMS

FAST = {"quick": True, "max_repeats": 20_000}
BIT = {"problems": ["bernoulli_toy"]}


def _toy(theta: float, t: float = 0.45):
    problem = PROBLEMS["bernoulli_toy"]({"theta": theta, "t": t, "d": 1}, dtype=torch.float64)
    point = problem.init_params()
    return problem, point, problem.truth(point).grad["theta"].reshape(-1)


def _relaxed_objective(theta: float, tau: float, t: float) -> float:
    """E f(y) = int_0^1 (y - t)^2 p(y) dy with the Binary Concrete density (Maddison et al.
    2017, eq. 9): p(y) = tau a y^(-tau-1) (1-y)^(-tau-1) / (a y^(-tau) + (1-y)^(-tau))^2,
    a = e^theta, integrated in log-odds x = log(y / (1 - y)) for accuracy near 0 and 1."""
    def integrand(x: float) -> float:
        log_y, log_1y = -np.logaddexp(0, -x), -np.logaddexp(0, x)
        log_density = (math.log(tau) + theta - (tau + 1) * (log_y + log_1y)
                       - 2 * np.logaddexp(theta - tau * log_y, -tau * log_1y))
        return (math.exp(log_y) - t) ** 2 * math.exp(log_density + log_y + log_1y)  # dy/dx

    span = 60 / tau
    return quad(integrand, -span, span, points=[-theta / tau], limit=500, epsabs=1e-14)[0]


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("theta", [2.5, -0.7])
def test_relaxed_target_is_the_gradient_of_the_concrete_density_integral(theta, tau):
    problem, point, truth = _toy(theta)
    value = compute(RelaxedGradient(), problem, point, truth, {"tau": tau})
    h = 1e-4  # central difference of the density integral: independent of the noise rule
    expected = (_relaxed_objective(theta + h, tau, 0.45)
                - _relaxed_objective(theta - h, tau, 0.45)) / (2 * h)
    assert value.kind == "quadrature" and float(value.error) < 1e-12
    np.testing.assert_allclose(float(value.value), expected, rtol=1e-6)
    # at tau -> 0 the relaxed objective is the exact one; at tau = 1 it is far from it
    if tau == 1.0:
        assert abs(float(value.value) - float(truth)) > 0.5 * abs(float(truth))


def test_straight_through_target_by_hand_on_one_bit():
    """ST on one bit: g = p (1 - p) f'(b), so E g = p (1 - p) [p 2 (1 - t) + (1 - p) 2 (-t)]."""
    problem, point, truth = _toy(1.3, 0.3)
    p = 1 / (1 + math.exp(-1.3))
    expected = p * (1 - p) * (p * 2 * (1 - 0.3) - (1 - p) * 2 * 0.3)
    value = compute(StraightThroughMean(), problem, point, truth, {})
    np.testing.assert_allclose(float(value.value), expected, rtol=1e-12)


class TwiceTau(GumbelSoftmax):
    """Broken: the temperature applied twice, y = sigmoid((l + L) / tau / tau)."""

    name = "test_gumbel_twice_tau"
    times = 2

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        y = relax(dist, self.option_values["tau"] ** self.times).rsample((n_samples,))
        return Surrogate(loss=problem.cost(y, params).mean(0),
                         samples=harden(dist, y.detach()), relaxed=y.detach())


class OnceTau(TwiceTau):
    """The same code with the temperature applied once: the registered estimator."""

    name = "test_gumbel_once_tau"
    times = 1


class HalfStraightThrough(StraightThrough):
    """Broken: half the straight-through backward, z + (p - stopgrad(p)) / 2."""

    name = "test_half_straight_through"

    def surrogate(self, problem, params, n_samples, state):
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))
        probs = mean_of(dist)
        return Surrogate(loss=problem.cost(z + (probs - probs.detach()) / 2, params).mean(0),
                         samples=z)


def test_gumbel_softmax_with_its_temperature_twice_fails_and_once_passes():
    twice = verify_one(TwiceTau, {"tau": 0.5}, **FAST, **BIT)
    assert twice.verdict().startswith("FAILED: test_gumbel_twice_tau: OFF TARGET on "
                                      "bernoulli_toy"), twice.verdict()
    once = verify_one(OnceTau, {"tau": 0.5}, **FAST, **BIT)
    assert once.verified and once.verdict().startswith("VERIFIED"), once.verdict()
    bit = next(c for c in once.cells if c.target == "quadrature")
    assert bit.verdict == "ok" and bit.truth_p < 1e-6  # on target, and biased as declared


def test_a_broken_straight_through_fails():
    report = verify_one(HalfStraightThrough, **FAST, **BIT)
    assert report.verdict().startswith("FAILED: test_half_straight_through: OFF TARGET"), \
        report.verdict()
    assert verify_one("straight_through", **FAST, **BIT).verified


def test_nothing_checkable_is_not_verified(capsys):
    report = verify_one("zgr", **FAST, **BIT)
    assert report.ok and not report.verified
    assert report.verdict().startswith("NOT VERIFIED: zgr (declared biased): biased as "
                                       "declared"), report.verdict()
    assert "no target to check" in report.verdict()


class FlipOneCoordinate(ReinforceLOO):
    """Broken: leave-one-out REINFORCE with the sign of one small coordinate's gradient
    flipped (the one with the smallest nonzero |true gradient|, 5% of the largest)."""

    name = "test_flip_one_coordinate"
    coordinate = -1

    def surrogate(self, problem, params, n_samples, state):
        moved, start = {}, 0
        for key, value in params.items():
            mask = torch.zeros(value[0].numel(), dtype=value.dtype)
            if start <= self.coordinate < start + mask.numel():
                mask[self.coordinate - start] = 1
            start += mask.numel()
            moved[key] = value - 2 * mask.reshape(value.shape[1:]) * (value - value.detach())
        return super().surrogate(problem, moved, n_samples, state)


def test_a_sign_error_on_one_small_coordinate_is_caught():
    problem = PROBLEMS["bernoulli_vae"]({"latents": 3, "batch": 2}, dtype=torch.float64)
    truth = flatten(problem.truth(problem.init_params()).grad, repeated=False)
    size = torch.where(truth.abs() > 1e-12, truth.abs(), math.inf)
    FlipOneCoordinate.coordinate = int(size.argmin())
    assert float(size.min()) < 0.06 * float(truth.abs().max())  # a small coordinate
    report = verify_one(FlipOneCoordinate, quick=True, problems=["bernoulli_vae"],
                        max_repeats=30_000)
    assert report.verdict().startswith("FAILED: test_flip_one_coordinate: BIASED on "
                                       "bernoulli_vae"), report.verdict()


class Copy(ReinforceLOO):
    """A user's leave-one-out REINFORCE: the built-in's code under another name."""

    name = "test_copy_of_loo"


def test_against_draws_common_random_numbers():
    report = verify_one(Copy, against="reinforce_loo", **FAST, **BIT)
    (cell,) = report.cells
    assert cell.bias.paired == (0.0, 0.0)  # sample for sample the same estimates
    assert cell.row()["max_diff"] == 0.0
    other = verify_one(Copy, against="disarm", **FAST, **BIT).cells[0]
    assert other.bias.paired[1] > 0  # another estimator: not the same estimates


class Exits(ReinforceLOO):
    """Broken: the surrogate calls sys.exit(0)."""

    name = "test_exits"

    def surrogate(self, problem, params, n_samples, state):
        raise SystemExit(0)


class Hangs(ReinforceLOO):
    """Broken: the surrogate never returns."""

    name = "test_hangs"

    def surrogate(self, problem, params, n_samples, state):
        while True:
            time.sleep(0.05)


def test_an_estimator_that_exits_fails(tmp_path, monkeypatch, capsys):
    (tmp_path / "exit_plugin.py").write_text(
        "from tests.test_verify_targets import Exits\nESTIMATORS = {'test_exits': Exits}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["verify", "test_exits", "--plugin", "exit_plugin", "--quick", "--no-progress",
                 "--problem", "bernoulli_toy"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED: test_exits: ERROR on bernoulli_toy" in out
    assert "the estimator called sys.exit(0)" in out


def test_an_estimator_that_hangs_fails_after_the_cell_timeout():
    start = time.perf_counter()
    report = verify_one(Hangs, quick=True, problems=["bernoulli_toy"], cell_timeout=1.0)
    assert time.perf_counter() - start < 10
    assert report.verdict().startswith("FAILED: test_hangs: ERROR on bernoulli_toy")
    assert "timed out after 1 s" in report.cells[0].message


@pytest.mark.parametrize(("declaration", "message"), [
    ("min_samples = 0", "min_samples = 0: expected an integer >= 1"),
    ("min_samples = -3", "min_samples = -3: expected an integer >= 1"),
    ("min_samples = '2'", "min_samples = '2': expected an integer >= 1"),
    ("requires = frozenset({'telepathy'})", "requires names unknown capabilities telepathy"),
])
def test_plugin_declarations_are_checked_at_registration(tmp_path, monkeypatch, capsys,
                                                         declaration, message):
    module = f"bad_plugin_{len(declaration)}_{declaration.count('-')}"  # one module each
    (tmp_path / f"{module}.py").write_text(
        "from estimators.score_function import Reinforce\n"
        f"class Bad(Reinforce):\n    name = 'bad'\n    {declaration}\n"
        "ESTIMATORS = {'bad': Bad}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["verify", "bad", "--plugin", module, "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert "bad" not in ESTIMATORS


def test_a_plugin_with_null_bytes_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "nul_plugin.py").write_bytes(b"ESTIMATORS = {}\n\x00\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["verify", "reinforce", "--plugin", "nul_plugin"]) == 2
    err = capsys.readouterr().err.strip()
    assert "None" not in err and "nul_plugin.py" in err and "null bytes" in err, err
