"""Reproductions with uncertainty: the exact variances they compare with, derived again here
by brute force from the estimators' definitions (not their code), the intervals that decide
claims, and a coin-flip claim that must come out "not resolved at this scale"."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bench.reproduce import bernoulli_d200, relax_toy
from bench.reproduce.base import interval_claim
from bench.reproduce.curves import ordering_claim
from bench.reproduce.exact_variance import exact_variance_claim, measure
from problems.toys import BernoulliToy


def _f(bits: np.ndarray, t: float) -> np.ndarray:
    return ((bits - t) ** 2).mean(-1)


def _brute_force(d: int, t: float) -> dict[str, float]:
    """Per-coordinate (j = 0) variances at theta = 0, K = 2 (one pair), by enumeration of the
    bits and, for ARM, Gauss-Legendre on each half of u_0 (the integrand is polynomial)."""
    cube = np.array(list(itertools.product((0.0, 1.0), repeat=d)))  # [2^d, d]
    f = _f(cube, t)
    mean_f = f.mean()
    # pairs (b1, b2) of independent uniform bit vectors
    g_loo = 0.5 * (f[:, None] - f[None, :]) * (cube[:, None, 0] - cube[None, :, 0])
    g_eb = 0.5 * ((f[:, None] - mean_f) * (cube[:, None, 0] - 0.5)
                  + (f[None, :] - mean_f) * (cube[None, :, 0] - 0.5))
    # DisARM (Dong et al. 2020): (1/2) (f(b) - f(b~)) (-1)^{b~_j} 1[b_j != b~_j] sigma(|theta|)
    anti = 1 - cube
    g_disarm = 0.5 * (f - _f(anti, t)) * (-1.0) ** anti[:, 0] * 0.5
    # ARM (Yin & Zhou 2019): (f(1[u > 1/2]) - f(1[u < 1/2])) (u_j - 1/2), u ~ U(0, 1)^d
    x, w = np.polynomial.legendre.leggauss(8)
    second, first = 0.0, 0.0
    for bits in cube:  # the half-interval of every u_i, i.e. b_i = 1[u_i > 1/2]
        diff = _f(bits, t) - _f(1 - bits, t)
        lo = 0.5 * bits[0]
        u0 = lo + 0.25 * (x + 1)  # nodes on the half of u_0 that gives bits[0]
        weight = 0.25 * w / 2 ** (d - 1)  # du_0 on a half of length 1/2; the others' mass
        first += float((weight * diff * (u0 - 0.5)).sum())
        second += float((weight * (diff * (u0 - 0.5)) ** 2).sum())
    return {"reinforce_loo": float(g_loo.var()), "reinforce_exact_baseline": float(g_eb.var()),
            "disarm": float(g_disarm.var()), "arm": second - first**2}


@pytest.mark.parametrize("d", [1, 3, 5])
@pytest.mark.parametrize("t", [0.499, 0.3])
def test_d200_closed_forms_equal_brute_force(d, t):
    exact = bernoulli_d200.exact_variances(d, t)
    brute = _brute_force(d, t)
    for name, value in brute.items():
        np.testing.assert_allclose(exact[name], value, rtol=1e-10,
                                   atol=1e-12 * ((1 - 2 * t) / d) ** 2, err_msg=name)


def test_d200_values_of_the_issue():
    exact = bernoulli_d200.exact_variances(200, 0.499)
    np.testing.assert_allclose(
        [exact[n] for n in ("reinforce_loo", "disarm", "reinforce_exact_baseline", "arm")],
        [1.25e-9, 1.24375e-9, 6.21875e-10, 1.6604167e-9], rtol=1e-7)


@pytest.mark.parametrize("t", [0.45, 0.499])
def test_relax_toy_closed_forms_equal_brute_force(t):
    exact = relax_toy.exact_variances(t)
    brute = _brute_force(1, t)
    # single-sample REINFORCE on one bit: g = f(b) (b - 1/2), b uniform
    g = np.array([_f(np.array([b]), t) * (b - 0.5) for b in (0.0, 1.0)])
    np.testing.assert_allclose(exact["reinforce"], g.var(), rtol=1e-12)
    np.testing.assert_allclose(exact["arm"], brute["arm"], rtol=1e-10)
    assert exact["disarm"] == brute["disarm"] == 0.0
    # at t = 0.499 the issue's 0.01562475 is 1/64 - (a/4)^2, i.e. E[g^2] taken as 1/64; the
    # exact E[g^2] = ((1 - t)^4 + t^4) / 8 = (1 + 24 delta^2 + 16 delta^4) / 64, delta = 1/2 - t
    expected = {0.45: 1.593906e-2, 0.499: 0.015625125}[t]
    np.testing.assert_allclose(exact["reinforce"], expected, rtol=1e-6)
    if t == 0.45:
        np.testing.assert_allclose(exact["arm"], 2.0833e-4, rtol=1e-4)
        assert (1 - 2 * t) / 4 == pytest.approx(0.025)  # the true gradient


def _toy200():
    return BernoulliToy({"t": 0.499, "d": 200, "theta": 0.0}, dtype=torch.float64)


def test_measured_variances_pass_and_a_wrong_exact_value_fails():
    samples = {"reinforce_loo": 2, "reinforce_exact_baseline": 2}
    measured = measure(_toy200, samples, 2000, "test")
    exact = bernoulli_d200.exact_variances(200, 0.499)
    right = exact_variance_claim("equal", "test", measured, exact)
    assert right.verdict == "PASS", right.measured
    wrong = exact_variance_claim("equal", "test", measured,
                                 {**exact, "reinforce_loo": exact["reinforce_exact_baseline"]})
    assert wrong.verdict == "FAIL", wrong.measured


def test_a_coin_flip_claim_is_not_resolved():
    """RLOO's and DisARM's variances at theta = 0 differ by 0.5% (exact): over five
    replicates of 2000 estimates each, the ordering cannot be decided."""
    values: dict[str, list[float]] = {"disarm": [], "reinforce_loo": []}
    for replicate in range(5):
        measured = measure(_toy200, {"disarm": 2, "reinforce_loo": 2}, 2000, "coin", replicate)
        for name in values:
            values[name].append(math.log10(measured[name][0]))
    claim = ordering_claim("DisARM below RLOO at theta = 0", "test", values, "disarm",
                           ["reinforce_loo"], "log10 variance")
    assert claim.passed is None and claim.unresolved
    assert claim.verdict == "not resolved at this scale"
    assert "99% interval" in claim.measured


def test_intervals_decide_clear_claims():
    assert interval_claim("a < b", "s", [-1.0, -1.1, -0.9], "a - b").verdict == "PASS"
    assert interval_claim("a < b", "s", [1.0, 1.1, 0.9], "a - b").verdict == "FAIL"
    assert interval_claim("a < b", "s", [-1.0, 1.0, 0.1], "a - b").verdict == \
        "not resolved at this scale"
    one = interval_claim("a < b", "s", [-5.0], "a - b")
    assert one.verdict == "not resolved at this scale" and "one value" in one.measured
