"""Analytic intervals of a cell's statistics (``bench.cell.metrics``), all at level 95%.

**Variance trace: a kurtosis-adjusted scaled chi-square** (Satterthwaite 1946; for a
sample variance of non-normal draws, the moment-matched chi-square of e.g. O'Neill 2014,
"Some useful moment results in sampling problems", Am. Stat.). For R draws g_r in R^D with
mean mu, covariance Sigma and x = g - mu, v_hat = (1/(R-1)) sum_r ||g_r - m||^2 is the
U-statistic of kernel h(a, b) = ||a - b||^2 / 2, whose variance (Hoeffding 1948) is

    Var(v_hat) = (mu4 - v^2) / R + 2 tr(Sigma^2) / (R (R - 1)),   mu4 = E ||x||^4,

i.e. v^2 ((kappa - 1) / R + 2 tr(Sigma^2) / (v^2 R (R - 1))) with kappa = mu4 / v^2 (for
D = 1 and Gaussian draws, 2 sigma^4 / (R - 1)). It is estimated without bias as
v_hat^2 - U(v^2), U(v^2) the U-statistic of h(a, b) h(c, d) over distinct quadruples (its
mean is v^2, and E v_hat^2 = Var(v_hat) + v^2). With d_r = ||g_r - m||^2, Q = sum_r d_r^2
and T = sum_{r, s} <g_r - m, g_s - m>^2, expanding the sums over distinct indices gives

    R (R-1) (R-2) (R-3) U(v^2) = (R-1)^2 (R^2 - 3R + 1) v_hat^2 - R (R-1) Q + 2 T.

T is exact when every estimate is its own block (R <= ``blocks.BLOCKS``); beyond, it is
Q + R (R - 1) tr(Sigma^2)_hat, tr(Sigma^2)_hat the blocks' unbiased estimate. The variance
estimate is kept at least at its Gaussian floor 2 tr(Sigma^2)_hat / (R (R - 1)). Then
v_hat ~ v chi2_nu / nu with nu = 2 v_hat^2 / Var_hat(v_hat), and the interval is

    [nu v_hat / chi2_{0.975, nu}, nu v_hat / chi2_{0.025, nu}].

It contains v_hat (chi2_{0.025, nu} < nu < chi2_{0.975, nu}) and is exact for Gaussian
draws in one dimension as nu -> R - 1.

**MSE**: mse_hat = (1/R) sum_r e_r with e_r = ||g_r - t||^2, a mean of iid non-negative
draws; Var(mse_hat) = Var(e) / R is estimated without bias by the sample variance of the
e_r over R (plus, for a reference truth t_hat = t + eps, eps ~ N(0, diag(se^2)), its
contribution 4 sum_c se_c^2 (m_c - t_c)^2 + 2 sum_c se_c^4), and the same scaled chi-square
with nu = 2 mse_hat^2 / Var_hat(mse_hat) gives the interval.

**Bias norm**: ``bias`` = sqrt(max(bias_sq, 0)) and its interval the square roots of the
positive parts of ``bias_sq``'s score interval (``score_interval``): an interval for
||E g - t|| that contains its point estimate, since the score interval contains bias_sq.

**The interval of ``bias_sq``** is analytic, also with ``--bootstrap 0``. With
b = E g - t and Omega = Cov(g) / R + diag(se(t)^2) the covariance of m - t,
Var(bias_sq) ~= 4 b' Omega b + 2 tr(Omega^2) + Var(sum_c v_c) / R^2. Writing
theta = ||b||^2 and rho = b' Omega b / ||b||^2, the interval is the set of theta with
(bias_sq - theta)^2 <= z^2 (s0^2 + 4 rho max(theta, 0)), s0^2 the variance at theta = 0
(its convex hull where that set has two pieces; z is Student's t quantile with
blocks - 1 degrees of freedom): a score-type interval, like Wilson's for a
proportion, whose test of theta = 0 uses the variance under theta = 0, so it contains 0 at
the nominal rate for an unbiased estimator, and tends to bias_sq +- z sd for a large bias.
tr(Cov^2) is estimated without bias from the block sums (Bai & Saranadasa 1996, at least
the sum of the squared variances), rho along the estimated bias direction from the block
sums' covariance, and Var(sum_c v_c) from the blocks' sums of squared deviations. The
interval is widened on both sides by D tol^2, the floating-point resolution of ||b||^2.

These intervals assume the fourth moments are resolved by the R draws; where they are not
(``heavy_tails``), every interval built from R such draws under-covers.
"""

from __future__ import annotations

import math

from scipy.special import chdtri, ndtri, stdtrit
from torch import Tensor

#: the level of every interval
LEVEL = 0.95
#: degrees of freedom above which the scaled chi-square is taken as its normal limit
NORMAL_NU = 1e7
#: the name of the analytic method in the ``interval_method`` column
CHI2 = "scaled_chi2"


def scaled_chi2_interval(estimate: float, variance: float) -> tuple[float, float]:
    """The interval of a non-negative ``estimate`` ~ theta chi2_nu / nu whose variance
    estimate is ``variance``: nu = 2 estimate^2 / variance (module docstring)."""
    if not estimate > 0 or not variance > 0:
        return estimate, estimate
    nu = 2 * estimate**2 / variance
    alpha = 1 - LEVEL
    if nu > NORMAL_NU:
        half = float(ndtri(1 - alpha / 2)) * math.sqrt(variance)
        return estimate - half, estimate + half
    return (
        nu * estimate / float(chdtri(nu, alpha / 2)),  # chdtri: the inverse survival function
        nu * estimate / float(chdtri(nu, 1 - alpha / 2)),
    )


def unbiased_trace_variance(trace: float, n: int, fourth_sum: float, gram_sq: float) -> float:
    """v_hat^2 - U(v^2), the unbiased estimate of Var(v_hat) (module docstring); it can be
    negative for small R.

    Args:
        trace: v_hat, the unbiased variance trace.
        n: R, the number of estimates (at least 4).
        fourth_sum: Q = sum_r ||g_r - m||^4.
        gram_sq: T = sum_{r, s} <g_r - m, g_s - m>^2.
    """
    quadruples = (n - 1) ** 2 * (n * n - 3 * n + 1) * trace**2 - n * (n - 1) * fourth_sum
    quadruples += 2 * gram_sq
    return trace**2 - quadruples / (n * (n - 1) * (n - 2) * (n - 3))


def trace_variance(
    trace: float, n: int, fourth_sum: float, gram_sq: float, cov_trace_sq: float
) -> float:
    """``unbiased_trace_variance`` kept at least at the Gaussian floor
    2 ``cov_trace_sq`` / (R (R - 1)), the estimate of tr(Sigma^2) (for R < 4, the Gaussian
    one-dimensional 2 v_hat^2 / (R - 1))."""
    floor = 2 * cov_trace_sq / (n * (n - 1))
    if n < 4:
        return max(2 * trace**2 / max(n - 1, 1), floor)
    return max(unbiased_trace_variance(trace, n, fourth_sum, gram_sq), floor)


def bias_sq_interval(
    bias_sq: float, n: int, bias: Tensor, variance: Tensor, se2: Tensor, cov_trace_sq: float,
    along_var: float, spread_var: float, n_blocks: int,
) -> tuple[float, float]:
    """The score interval of ``bias_sq`` (module docstring), before the floating-point widening.

    Args:
        bias: ``[D]`` m - t; variance: ``[D]`` v; se2: ``[D]`` se(t)^2 (zeros if exact).
        cov_trace_sq: tr(Cov^2); along_var: b' Cov b along ``bias``; spread_var:
            Var(sum_r ||g_r - m||^2); n_blocks: blocks these come from.
    """
    # tr(Omega^2), Omega = Cov / R + diag(se^2)
    omega_sq = cov_trace_sq / n**2 + 2 * float((variance * se2).sum()) / n + float((se2**2).sum())
    s0_sq = 2 * omega_sq + spread_var / n**4
    norm_sq = float((bias**2).sum())
    along = along_var / n + float((se2 * bias**2).sum())
    rho = along / norm_sq if norm_sq > 0 else 0.0
    # Student's t quantile: s0 is estimated from the blocks (n_blocks - 1 degrees of freedom)
    z = float(stdtrit(max(n_blocks - 1, 1), 0.5 + LEVEL / 2))
    return score_interval(bias_sq, s0_sq, 4 * rho, z)


def score_interval(estimate: float, s0_sq: float, slope: float, z: float) -> tuple[float, float]:
    """Convex hull of {theta : (estimate - theta)^2 <= z^2 (s0_sq + slope max(theta, 0))}."""
    half = z * math.sqrt(s0_sq)
    lows, highs = [], []
    if estimate - half < 0:  # the piece theta < 0
        lows.append(estimate - half)
        highs.append(min(estimate + half, 0.0))
    # theta >= 0: theta^2 - (2 e + z^2 slope) theta + e^2 - z^2 s0_sq <= 0
    b = 2 * estimate + z**2 * slope
    disc = b**2 - 4 * (estimate**2 - z**2 * s0_sq)
    if disc >= 0:
        root_low, root_high = (b - math.sqrt(disc)) / 2, (b + math.sqrt(disc)) / 2
        if root_high >= 0:
            lows.append(max(root_low, 0.0))
            highs.append(root_high)
    return min(lows), max(highs)


def norm_interval(low: float, high: float) -> tuple[float, float]:
    """The interval of ||b|| from one of ||b||^2: square roots of the positive parts."""
    return math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0))
