"""Streaming statistics of R gradient estimates against a reference gradient.

For estimates g_1..g_R in R^D and a true gradient t:

* per coordinate: mean m = (1/R) sum_r g_r and unbiased variance v;
* ``bias_l2`` = ||m - t||, with the noise floor sqrt(sum_c v_c / R + sum_c se_c(t)^2) that
  an unbiased estimator's ``bias_l2`` is of the order of (se(t) = 0 for an exact truth),
  and Bonferroni-corrected per-coordinate z-scores (m_c - t_c) / sqrt(v_c / R + se_c(t)^2
  + tol^2) with the p-value of the largest, from Student's t with R - 1 degrees of freedom
  (the normal tail would call an unbiased estimator biased at small R: p ~ 1e-6 at R = 2).
  tol = ``FP_ULPS`` x the machine epsilon of the estimates' (or the truth's, if coarser)
  dtype x max(||t||_inf, ||m||_inf) is the floating-point resolution of a gradient of that
  size: an estimator with zero variance whose mean differs from the truth by rounding alone
  (a DisARM at theta = 0 in float32) is not called biased;
* ``bias_sq`` = ||m - t||^2 - sum_c v_c / R - sum_c se_c(t)^2, an unbiased estimate of the
  squared bias norm ||E g - t||^2 (E||m - t||^2 = ||E g - t||^2 + tr(Cov g) / R +
  sum_c Var(t_c), and each subtracted term is an unbiased estimate of its counterpart), so
  it is negative about half the time for an unbiased estimator; its interval is below;
  ``bias`` = sqrt(max(bias_sq, 0)) estimates ||E g - t||, with the square roots of that
  interval (``bench.cell.intervals``);
* ``variance_trace`` = sum_c v_c (the trace of the covariance);
* ``mse`` = (1/R) sum_r ||g_r - t||^2 = ||m - t||^2 + (R - 1)/R * variance_trace, unbiased
  for E||g - t||^2; mse - variance_trace = bias_sq (+ sum_c se_c(t)^2), so it is below the
  variance about half the time for an unbiased estimator;
* ``cosine`` = (1/R) sum_r <g_r, t> / (||g_r|| ||t||) (0 where a norm is 0);
* ``snr`` = ||m|| / sqrt(variance_trace) (Rainforth et al. 2018, "Tighter Variational
  Bounds are Not Necessarily Better", ICML, generalised to vectors);
* ``kurtosis`` = mean_r ||g_r - m||^4 / (mean_r ||g_r - m||^2)^2, the kurtosis of the
  distance to the mean (the ordinary kurtosis when D = 1): (kurtosis - 1) / R is the
  squared relative standard error of ``variance_trace``. ``heavy_tails`` is set when that
  relative error exceeds ``HEAVY_TAIL_REL_SE``: then the variance is resolved by a few
  large estimates, its interval (any interval built from R such draws) under-covers, and
  the bias test rejects an unbiased estimator more often than its level (docs/intervals.md).
  The sums behind it are centred on the mean of the first estimates; the one term of the
  fourth moment about the final mean that they do not hold comes from the blocks.

**The intervals of ``variance_trace`` and ``mse``** are kurtosis-adjusted scaled chi-square
intervals (``bench.cell.intervals``; ``interval_method`` = ``scaled_chi2``): the unbiased
Var(variance_trace) needs sum_r ||g_r - m||^4 (the kurtosis' numerator) and
sum_{r,s} <g_r - m, g_s - m>^2 (from the blocks); Var(mse) the sums of ||g_r - t||^2 and of
its square, accumulated about the first estimates' mean of it. Their coverage, measured
on closed-form cells, is in docs/intervals.md. ``bias_sq``'s interval is analytic too
(``bench.cell.intervals``).

**Blocks.** The estimates are kept as the sums of at most ``BLOCKS`` blocks of consecutive
estimates, from which the covariance moments below and the Poisson bootstrap interval of
``bias_l2`` (95%, a percentile interval of ||m - t||) come: ``bench.cell.blocks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bench.cell.blocks import BlockMoments, Blocks, block_moments, bootstrap_bias_l2, n_blocks
from bench.cell.intervals import (
    CHI2,
    bias_sq_interval,
    norm_interval,
    scaled_chi2_interval,
    trace_variance,
)
from bench.cell.moments import Moments

#: float64 elements of a chunk processed at once: bounds the temporaries of ``add``
ADD_ELEMENTS = 2**18
#: floating-point tolerance of the bias test, in units of the dtype's epsilon x |gradient|
FP_ULPS = 64
#: relative standard error of variance_trace, sqrt((kurtosis - 1) / R), above which
#: ``heavy_tails`` is set
HEAVY_TAIL_REL_SE = 0.15
@dataclass
class Summary:
    """Per-coordinate and scalar statistics of a cell."""

    mean: np.ndarray
    variance: np.ndarray
    bias_z: np.ndarray | None
    scalars: dict[str, float]


class Accumulator(Moments):
    """Accumulates chunks of estimates ``[c, D]`` and summarises them: the ``Moments`` of
    ``bench.cell.moments`` (their sums centred on the mean of the first estimates, see
    ``_start``), kept in blocks for the bootstrap, with the intervals of the module docstring.

    Args:
        dim: D, the number of gradient coordinates.
        truth: ``[D]`` reference gradient, or None (truth-free metrics only).
        truth_se: ``[D]`` standard error of a reference truth, or None if exact.
        n_bootstrap: bootstrap replicates B (0 disables the bootstrap intervals).
        seed: seed of the bootstrap's own generator (independent of the sampling RNG).
        n_repeats: how many estimates will be added (R), which sets the block size; None
            makes every estimate its own block (the plain Poisson bootstrap; memory then
            grows with R).
    """

    def __init__(
        self,
        dim: int,
        truth: Tensor | None,
        truth_se: Tensor | None,
        n_bootstrap: int,
        seed: int,
        n_repeats: int | None = None,
    ) -> None:
        super().__init__(dim)
        self.truth_eps = 0.0 if truth is None else _eps(truth.dtype)
        self.truth = None if truth is None else truth.detach().double().reshape(-1).cpu()
        self.truth_se = None if truth_se is None else truth_se.detach().double().reshape(-1).cpu()
        self.n_bootstrap = n_bootstrap
        size = 1 if n_repeats is None else math.ceil(n_repeats / n_blocks(dim, n_repeats))
        self.generator = torch.Generator().manual_seed(seed)
        self.shift_products = (0.0, 0.0, 0.0)
        self.error_shift = 0.0  # mean ||g - t||^2 of the first estimates, the centre of e1, e2
        self.e1 = 0.0  # sum of ||g - t||^2 - error_shift (the mse's numerator)
        self.e2 = 0.0  # sum of its squares
        self.estimate_eps = 0.0
        self.cos_sum = 0.0
        self.r1 = 0.0  # sum of squared distances to the data shift
        self.r2 = 0.0  # sum of their squares
        self.rc = torch.zeros(dim, dtype=torch.float64)  # sum of distance x centred estimate
        self.blocks = Blocks(dim, size)  # of the data-centred estimates
        self.rows = max(1, ADD_ELEMENTS // max(dim, 1))  # estimates processed at once
        self.buffer: list[Tensor] = []  # the first estimates, until there are ``rows``
        # reused work space of ``add`` (fresh megabyte-sized tensors cost page faults)
        self.work = torch.empty(self.rows, dim, dtype=torch.float64)

    def add(self, chunk: Tensor) -> None:
        """Add estimates ``[c, D]`` (any device or float dtype)."""
        chunk = chunk.detach()
        self.estimate_eps = max(self.estimate_eps, _eps(chunk.dtype))
        for piece in chunk.split(self.rows):
            if self.shift is not None:
                # copied into the work space in float64, then centred on the shift there
                self._add(self.work[: piece.shape[0]].copy_(piece).sub_(self.shift))
                continue
            # the first ``rows`` estimates, whatever the chunks, set the shift
            self.buffer.append(piece.to("cpu", torch.float64, copy=True))
            if sum(b.shape[0] for b in self.buffer) >= self.rows:
                self._start()

    def close(self) -> None:
        """Add what is still buffered (``summary`` does it too); before reading ``n`` or
        ``n_nonfinite`` after the last ``add``."""
        if self.buffer:
            self._start()

    def _start(self) -> None:
        """Centre on the mean of the buffered first estimates and add them."""
        g = torch.cat(self.buffer)
        self.buffer = []
        # a row with a nan or an infinity has a non-finite sum (float64 cannot overflow on
        # float32 estimates); later pieces test their distances to the shift instead
        finite = torch.isfinite(g.sum(1))
        self.n_nonfinite += int((~finite).sum())
        g = g[finite]
        if g.shape[0]:
            self.shift = g.mean(0)
            if self.truth is not None:  # ||shift||^2, <shift, t>, ||t||: constants of ``_add``
                self.shift_products = (
                    float(self.shift @ self.shift),
                    float(self.shift @ self.truth),
                    float(self.truth.norm()),
                )
                self.error_shift = float(((g - self.truth) ** 2).sum(1).mean())
            for part in (g - self.shift).split(self.rows):  # ``rows`` at most, as the work space
                self._add(part)

    def _add(self, centred: Tensor) -> None:
        """Add estimates centred on the shift, ``[c, D]`` float64, c <= ``rows``."""
        distance = torch.linalg.vector_norm(centred, dim=1).square_()  # [c] to the shift
        finite = torch.isfinite(distance)
        if not bool(finite.all()):
            self.n_nonfinite += int((~finite).sum())
            centred, distance = centred[finite], distance[finite]
            if not centred.shape[0]:
                return
        self.n += centred.shape[0]
        self.s1 += self.blocks.add(centred, distance)
        self.s2 += torch.linalg.vector_norm(centred, dim=0).square_()
        self.r1 += float(distance.sum())
        self.r2 += float(distance @ distance)
        self.rc += distance @ centred
        if self.truth is not None:
            # <g, t> and ||g||^2 from the centred rows: g = shift + centred; two
            # matrix-vector products (one [c, D] x [D, 2] product is several times slower)
            shift_sq, shift_dot, truth_norm = self.shift_products
            along_truth, along_shift = centred @ self.truth, centred @ self.shift
            dots = along_truth + shift_dot
            norms = (distance + 2 * along_shift + shift_sq).clamp_min(0).sqrt()
            norms = norms * truth_norm
            self.cos_sum += float(torch.where(norms > 0, dots / norms, 0.0).sum())
            # ||g - t||^2 = ||c||^2 + 2 <c, shift - t> + ||shift - t||^2, about error_shift
            gap_sq = shift_sq - 2 * shift_dot + truth_norm**2
            error = distance + 2 * (along_shift - along_truth) + (gap_sq - self.error_shift)
            self.e1 += float(error.sum())
            self.e2 += float(error @ error)

    @property
    def tolerance(self) -> float:
        """Floating-point resolution of one gradient coordinate (see module docstring)."""
        if self.truth is None or self.n == 0:
            return 0.0
        mean = self.shift + self.s1 / self.n
        scale = max(float(self.truth.abs().max()), float(mean.abs().max()))
        return FP_ULPS * max(self.estimate_eps, self.truth_eps) * scale

    def summary(self) -> Summary:
        """Statistics of the estimates added so far (at least two finite ones)."""
        self.close()
        if self.n < 2:
            raise ValueError(f"need at least 2 finite estimates, got {self.n}")
        if self.blocks.pending_n:
            self.blocks.flush()
        n = self.n
        mean, variance = self.mean, self.variance
        trace = float(variance.sum())
        truth_var = 0.0 if self.truth_se is None else float((self.truth_se**2).sum())
        tol = self.tolerance
        bias = None if self.truth is None else mean - self.truth
        offset = self.s1 / n  # mean - shift
        directions = torch.stack([offset] + ([] if bias is None else [bias]), 1)  # [D, 1 or 2]
        blocks = block_moments(self.blocks, n, directions, variance)
        kurtosis, fourth_sum = self._kurtosis(offset, float(blocks.direction_var[0]))
        scalars: dict[str, float] = {
            "variance_trace": trace,
            "snr": float(mean.norm() / math.sqrt(trace)) if trace > 0 else math.inf,
            "bias_l2_noise_floor": math.sqrt(trace / n + truth_var + self.dim * tol**2),
            "kurtosis": kurtosis,
            "heavy_tails": bool(math.sqrt(max(kurtosis - 1, 0) / n) > HEAVY_TAIL_REL_SE),
            "bootstrap_blocks": len(self.blocks),
        }
        scalars |= self._trace_interval(trace, fourth_sum, blocks)
        bias_z = None
        if bias is not None:
            # the standard error is 0 only where truth and mean are 0, and with them the bias
            test = self.z_test(self.truth, 0.0 if self.truth_se is None else self.truth_se**2,
                               tol, variance=variance)
            bias_z, max_z = test.z, test.max_abs_z
            bias_sq = float(bias.norm() ** 2) - trace / n - truth_var
            scalars |= {
                "bias_l2": float(bias.norm()),
                "bias_sq": bias_sq,
                "bias": math.sqrt(max(bias_sq, 0.0)),
                "mse": float(bias.norm() ** 2 + (n - 1) / n * trace),
                "cosine": self.cos_sum / n,
                "bias_max_abs_z": max_z,
                "bias_p_value": test.p_value,
                "truth_l2": float(self.truth.norm()),
            }
            low, high = self._bias_sq_interval(bias, variance, bias_sq, blocks, tol)
            scalars |= {"bias_sq_ci_low": low, "bias_sq_ci_high": high}
            scalars["bias_ci_low"], scalars["bias_ci_high"] = norm_interval(low, high)
            scalars |= self._mse_interval(scalars["mse"], bias)
        if self.n_bootstrap and self.truth is not None:
            scalars |= bootstrap_bias_l2(self.blocks, self.shift, self.truth, self.truth_se,
                                         self.n_bootstrap, self.generator)
        return Summary(
            mean=mean.numpy(),
            variance=variance.numpy(),
            bias_z=None if bias_z is None else bias_z.numpy(),
            scalars=scalars,
        )

    def _trace_interval(self, trace: float, fourth_sum: float, blocks: BlockMoments) -> dict:
        """The scaled chi-square interval of the variance trace (``bench.cell.intervals``);
        T exact where every estimate is its own block."""
        n = self.n
        gram_sq = blocks.gram_sq
        if self.blocks.size > 1 or not math.isfinite(gram_sq):
            gram_sq = fourth_sum + n * (n - 1) * blocks.cov_trace_sq
        variance = trace_variance(trace, n, fourth_sum, gram_sq, blocks.cov_trace_sq)
        low, high = scaled_chi2_interval(trace, variance)
        return {"variance_trace_ci_low": low, "variance_trace_ci_high": high,
                "interval_method": CHI2}

    def _mse_interval(self, mse: float, bias: Tensor) -> dict[str, float]:
        """The scaled chi-square interval of the mse from the spread of ||g_r - t||^2."""
        n = self.n
        spread = max(self.e2 - self.e1**2 / n, 0.0) / (n - 1)  # unbiased Var(||g - t||^2)
        variance = spread / n
        if self.truth_se is not None:
            se2 = self.truth_se**2
            variance += 4 * float((se2 * bias**2).sum()) + 2 * float((se2**2).sum())
        low, high = scaled_chi2_interval(mse, variance)
        return {"mse_ci_low": low, "mse_ci_high": high}

    def _kurtosis(self, offset: Tensor, offset_var: float) -> tuple[float, float]:
        """mean ||g - m||^4 / (mean ||g - m||^2)^2 about the final mean m, from the sums
        about the shift: with c = g - shift, delta = m - shift, a = <c, delta>,
        ||g - m||^2 = ||c||^2 - 2 a + ||delta||^2; the sum of a^2, the one term the sums do
        not hold, is (R - 1) delta' Cov delta + R ||delta||^4, Cov from the blocks."""
        n, q = self.n, float((offset**2).sum())
        second = self.r1 - n * q
        if second <= 0:
            return math.nan, 0.0
        a_sq = (n - 1) * offset_var + n * q**2
        fourth = self.r2 + 4 * a_sq - 4 * float(self.rc @ offset) + 2 * q * self.r1 - 3 * n * q**2
        return fourth * n / second**2, fourth

    def _bias_sq_interval(
        self, bias: Tensor, variance: Tensor, bias_sq: float, blocks: BlockMoments, tol: float
    ) -> tuple[float, float]:
        se2 = torch.zeros_like(variance) if self.truth_se is None else self.truth_se**2
        low, high = bias_sq_interval(
            bias_sq, self.n, bias, variance, se2, blocks.cov_trace_sq,
            float(blocks.direction_var[-1]), blocks.spread_var, blocks.n_blocks,
        )
        widen = self.dim * tol**2  # the floating-point resolution of ||b||^2
        return low - widen, high + widen

def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps) if dtype.is_floating_point else 0.0
