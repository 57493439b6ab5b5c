"""Moments of R gradient estimates and the z-tests every driver makes with them.

For estimates g_1..g_R in R^D: per coordinate the mean m_c = (1/R) sum_r g_rc and the
unbiased variance v_c, accumulated chunk by chunk as float64 sums centred on a shift s
(s1 = sum_r (g_r - s), s2 = sum_r (g_r - s)^2, so that v = (s2 - s1^2 / R) / (R - 1) keeps its
digits when |m| >> sqrt(v)). Rows with a non-finite coordinate are counted and left out.

The bias test of a truth t: z_c = (m_c - t_c) / sqrt(v_c / R + var_c(t) + tol^2) per
coordinate (var(t) the squared standard error of a reference truth, tol a floating-point
resolution), and the Bonferroni p-value of the largest |z_c| from Student's t with R - 1
degrees of freedom: p = min(1, 2 D P(T_{R-1} < -max |z|)). ``bench.cell.metrics.Accumulator``
extends ``Moments`` with its own accumulation (blocks for the bootstrap) and intervals;
``bench verify`` and the test helpers use ``Moments`` as it is.

The standard error of a sample variance (``variance_with_se``) is
sqrt((m4 - s^4 (R - 3) / (R - 1)) / R), m4 the fourth central moment (no normality assumed:
score-function estimates are heavy-tailed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.special import ndtri, stdtr
from torch import Tensor


def z_threshold(n_checks: int, alpha: float) -> float:
    """Two-sided Bonferroni z threshold for ``n_checks`` simultaneous checks at level
    ``alpha``: ``Phi^-1(1 - alpha / (2 n_checks))``."""
    return float(ndtri(1 - alpha / (2 * max(n_checks, 1))))


@dataclass(frozen=True)
class ZTest:
    """The bias test of a mean against a truth.

    Attributes:
        z: ``[D]`` per-coordinate z-scores (0 where mean and truth agree within ``exact``).
        max_abs_z: the largest |z_c|.
        p_value: Bonferroni p-value of "unbiased" over the D coordinates (Student's t).
    """

    z: Tensor
    max_abs_z: float
    p_value: float


class Moments:
    """Streaming per-coordinate mean and variance of chunks of estimates ``[c, D]``.

    Args:
        dim: D, the number of coordinates.
        shift: ``[D]`` the centre of the sums (e.g. the truth); default zero.
    """

    def __init__(self, dim: int, shift: Tensor | None = None) -> None:
        self.dim = dim
        self.shift = shift
        self.n = 0
        self.n_nonfinite = 0
        self.s1 = torch.zeros(dim, dtype=torch.float64)
        self.s2 = torch.zeros(dim, dtype=torch.float64)

    def add(self, chunk: Tensor) -> None:
        """Add estimates ``[c, D]`` (any device or float dtype); non-finite rows are counted."""
        g = chunk.detach().double().cpu()
        if self.shift is not None:
            g = g - self.shift
        finite = torch.isfinite(g).all(1)
        self.n_nonfinite += int((~finite).sum())
        g = g[finite]
        self.n += g.shape[0]
        self.s1 += g.sum(0)
        self.s2 += (g**2).sum(0)

    @property
    def offset(self) -> Tensor:
        """``[D]`` mean - shift."""
        return self.s1 / max(self.n, 1)

    @property
    def mean(self) -> Tensor:
        """``[D]`` the mean of the finite estimates."""
        return self.offset if self.shift is None else self.shift + self.offset

    @property
    def variance(self) -> Tensor:
        """``[D]`` the unbiased variance per coordinate (clamped at 0)."""
        n = max(self.n, 1)
        return ((self.s2 - self.s1**2 / n) / max(self.n - 1, 1)).clamp_min(0)

    def z_test(
        self,
        truth: Tensor,
        truth_var: Tensor | float = 0.0,
        tol: float = 0.0,
        exact: float = 0.0,
        variance: Tensor | None = None,
    ) -> ZTest:
        """The bias test of the mean against ``truth`` ``[D]`` (module docstring).

        Args:
            truth_var: the squared standard error of a reference truth, per coordinate.
            tol: floating-point resolution added to every standard error.
            exact: a miss ``|m_c - t_c| <= exact`` is no evidence of bias (z_c = 0).
            variance: the variance per coordinate, if already computed.
        """
        n = self.n
        variance = self.variance if variance is None else variance
        bias = self.mean - truth
        se = (variance / max(n, 1) + truth_var + tol**2).sqrt()
        z = torch.where(se > 0, bias / se.clamp_min(1e-300), torch.where(bias == 0, 0.0, math.inf))
        if exact:
            z = torch.where(bias.abs() <= exact, 0.0, z)
        max_z = float(z.abs().max())
        p_value = min(1.0, self.dim * 2 * float(stdtr(n - 1, -max_z))) if n > 1 else math.nan
        return ZTest(z, max_z, p_value)


def variance_with_se(estimates: Tensor) -> tuple[Tensor, Tensor]:
    """Per-coordinate unbiased variance of ``[R, D]`` estimates and its standard error
    (module docstring)."""
    x = estimates.double()
    n = x.shape[0]
    centred = x - x.mean(0)
    variance = centred.pow(2).sum(0) / (n - 1)
    m4 = centred.pow(4).mean(0)
    se = ((m4 - variance.pow(2) * (n - 3) / (n - 1)).clamp_min(0) / n).sqrt()
    return variance, se
