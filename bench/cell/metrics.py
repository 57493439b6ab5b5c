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

**Blocks.** The estimates are grouped, in the order they are drawn, into at most
``BLOCKS`` consecutive blocks of m = ceil(R / blocks) estimates (m = 1, the estimates
themselves, when R is at most that), and only the blocks' sums are kept: ``[blocks, D]``
in float64, a few megabytes whatever R is. The estimates are independent and identically
distributed, so the block sums are too; everything below resamples or averages them.

**The intervals of ``variance_trace`` and ``mse``** are kurtosis-adjusted scaled chi-square
intervals (``bench.cell.intervals``; ``interval_method`` = ``scaled_chi2``): the unbiased
Var(variance_trace) needs sum_r ||g_r - m||^4 (the kurtosis' numerator) and
sum_{r,s} <g_r - m, g_s - m>^2 (from the blocks); Var(mse) the sums of ||g_r - t||^2 and of
its square, accumulated about the first estimates' mean of it. Their coverage, measured
on closed-form cells, is in docs/intervals.md. ``bias_sq``'s interval is analytic too
(``bench.cell.intervals``).

**The bootstrap interval of ``bias_l2``** (95%) is a percentile interval of the statistic
||m - t|| (its sampling spread, not an interval for ||E g - t||) from the Poisson
bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012) over
the blocks: each replicate weights every block by an independent Poisson(1) count, drawn
by inverting the Poisson(1) distribution function at a uniform (exact, and several times
faster than ``torch.poisson``). Resampling blocks of iid draws instead of the draws is the
block bootstrap (Kunsch 1989) with no dependence to preserve; with hundreds of blocks it is
as valid as resampling the draws, at a cost of B x blocks x D instead of B x R x D. The
replicates' statistics are computed at the end, in slices of coordinates, from the blocks'
sums centred on the mean of the first estimates, in float64 (so that the same cell gives
the same interval on any CPU to many digits). For a reference truth with standard error
se(t), each replicate also draws t_b ~ N(t, se(t)^2). Its generator is seeded apart from
the sampling (``bench.cell.run``: ``derive_seed("bootstrap", cell seed)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bench.cell.intervals import (
    CHI2,
    bias_sq_interval,
    norm_interval,
    scaled_chi2_interval,
    trace_variance,
)
from bench.cell.moments import Moments

#: the most blocks the bootstrap resamples (fewer when R is smaller)
BLOCKS = 500
#: the fewest blocks kept when D is so large that ``BLOCKS`` would exceed ``BLOCK_BYTES``
MIN_BLOCKS = 200
#: memory budget of the stored block sums (float64), above MIN_BLOCKS x D x 8 bytes
BLOCK_BYTES = 2**27
#: float64 elements of a chunk processed at once: bounds the temporaries of ``add``
ADD_ELEMENTS = 2**18
#: float64 elements of one slice of bootstrap replicates ([B, slice]) at the end
SLICE_ELEMENTS = 2**21
#: floating-point tolerance of the bias test, in units of the dtype's epsilon x |gradient|
FP_ULPS = 64
#: relative standard error of variance_trace, sqrt((kurtosis - 1) / R), above which
#: ``heavy_tails`` is set
HEAVY_TAIL_REL_SE = 0.15
#: the Poisson(1) distribution function at 0, 1, ..., 20, in float32
POISSON_CDF = torch.tensor(
    np.cumsum([math.exp(-1) / math.factorial(k) for k in range(21)]), dtype=torch.float32
)


def poisson_weights(n_rows: int, n_cols: int, generator: torch.Generator) -> Tensor:
    """``[n_rows, n_cols]`` independent Poisson(1) counts (float64) by inverse CDF: each
    probability to 2^-24 (float32 uniforms), P(count > 10) < 1e-8 is cut off."""
    uniform = torch.rand(n_rows, n_cols, generator=generator)
    return torch.bucketize(uniform, POISSON_CDF, right=True).to(torch.float64)


def n_blocks(dim: int, n_repeats: int | None) -> int:
    """How many blocks R estimates of D coordinates are grouped into (see module docstring)."""
    cap = min(BLOCKS, max(MIN_BLOCKS, BLOCK_BYTES // (8 * max(dim, 1))))
    return cap if n_repeats is None else max(1, min(cap, n_repeats))


@dataclass
class Summary:
    """Per-coordinate and scalar statistics of a cell."""

    mean: np.ndarray
    variance: np.ndarray
    bias_z: np.ndarray | None
    scalars: dict[str, float]


@dataclass
class BlockMoments:
    """What the block sums tell of the covariance Cov of one estimate.

    Attributes:
        cov_trace_sq: tr(Cov^2).
        direction_var: ``[k]`` v' Cov v for each of the k given directions v.
        spread_var: Var(sum_r ||g_r - mean||^2), the spread of the variance's numerator.
        n_blocks: how many blocks they come from.
        gram_sq: sum_{j, k} <y_j, y_k>^2 of the blocks' centred sums y_j (scaled by the
            root of their counts): T of ``bench.cell.intervals`` when blocks are estimates.
    """

    cov_trace_sq: float
    direction_var: Tensor
    spread_var: float
    n_blocks: int
    gram_sq: float = math.nan


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
        blocks = n_blocks(dim, n_repeats)
        self.block_size = 1 if n_repeats is None else math.ceil(n_repeats / blocks)
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
        self.blocks: list[Tensor] = []  # [b, D] sums of data-centred estimates
        self.block_r: list[Tensor] = []  # [b] float64 sums of squared distances
        self.block_n: list[Tensor] = []  # [b] float64 counts
        self.pending_n = 0
        self.pending_s1 = torch.zeros(dim, dtype=torch.float64)
        self.pending_r = 0.0
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
        self.s1 += self._block_sums(centred, distance)
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

    def _block_sums(self, centred: Tensor, distance: Tensor) -> Tensor:
        """Add centred estimates ``[c, D]`` to the blocks, in the order drawn; returns their
        sum ``[D]`` (from the blocks' sums, which read every row once)."""
        m, start, count = self.block_size, 0, centred.shape[0]
        total = torch.zeros(self.dim, dtype=torch.float64)
        if self.pending_n:
            start = min(m - self.pending_n, count)
            head = centred[:start].sum(0)
            total += head
            self.pending_s1 += head
            self.pending_r += float(distance[:start].sum())
            self.pending_n += start
            if self.pending_n == m:
                self._flush()
        full = (count - start) // m * m
        if full:
            block = slice(start, start + full)
            sums = centred[block].reshape(-1, m, self.dim).sum(1)
            total += sums.sum(0)
            self.blocks.append(sums)
            self.block_r.append(distance[block].reshape(-1, m).sum(1))
            self.block_n.append(torch.full((full // m,), float(m), dtype=torch.float64))
        if start + full < count:
            self.pending_s1 = centred[start + full :].sum(0)
            total += self.pending_s1
            self.pending_r = float(distance[start + full :].sum())
            self.pending_n = count - start - full
        return total

    def _flush(self) -> None:
        self.blocks.append(self.pending_s1.clone().unsqueeze(0))
        self.block_r.append(torch.tensor([self.pending_r], dtype=torch.float64))
        self.block_n.append(torch.tensor([float(self.pending_n)], dtype=torch.float64))
        self.pending_n, self.pending_r = 0, 0.0
        self.pending_s1 = torch.zeros(self.dim, dtype=torch.float64)

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
        if self.pending_n:
            self._flush()
        n = self.n
        mean, variance = self.mean, self.variance
        trace = float(variance.sum())
        truth_var = 0.0 if self.truth_se is None else float((self.truth_se**2).sum())
        tol = self.tolerance
        bias = None if self.truth is None else mean - self.truth
        offset = self.s1 / n  # mean - shift
        directions = torch.stack([offset] + ([] if bias is None else [bias]), 1)  # [D, 1 or 2]
        blocks = self._block_moments(directions, variance)
        kurtosis, fourth_sum = self._kurtosis(offset, float(blocks.direction_var[0]))
        scalars: dict[str, float] = {
            "variance_trace": trace,
            "snr": float(mean.norm() / math.sqrt(trace)) if trace > 0 else math.inf,
            "bias_l2_noise_floor": math.sqrt(trace / n + truth_var + self.dim * tol**2),
            "kurtosis": kurtosis,
            "heavy_tails": bool(math.sqrt(max(kurtosis - 1, 0) / n) > HEAVY_TAIL_REL_SE),
            "bootstrap_blocks": sum(len(b) for b in self.block_n),
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
        scalars |= self._intervals()
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
        if self.block_size > 1 or not math.isfinite(gram_sq):
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

    def _stacked(self) -> tuple[Tensor, Tensor, Tensor]:
        """The block sums ``[N, D]``, their squared distances and counts ``[N]``."""
        return torch.cat(self.blocks), torch.cat(self.block_r), torch.cat(self.block_n)

    def _block_moments(self, directions: Tensor, variance: Tensor) -> BlockMoments:
        """Covariance moments from the block sums (see ``BlockMoments``); ``directions``
        ``[D, k]``, the first the offset mean - shift. Diagonal approximations where there
        are fewer than 4 blocks."""
        sums, distance, counts = self._stacked()
        n, n_blocks_ = self.n, sums.shape[0]
        if n_blocks_ < 4:
            diagonal = (variance.unsqueeze(1) * directions**2).sum(0)
            return BlockMoments(float((variance**2).sum()), diagonal, 0.0, n_blocks_)
        centre = sums.sum(0) / n  # [D] mean of the centred estimates
        scale = counts.sqrt().unsqueeze(1)
        frobenius = 0.0
        projection = torch.zeros(n_blocks_, directions.shape[1], dtype=torch.float64)
        gram = torch.zeros(n_blocks_, n_blocks_, dtype=torch.float64)
        pieces = []  # the whole [N, D] when D <= N: tr(A^2) from the smaller [D, D]
        step = max(1, SLICE_ELEMENTS // n_blocks_)
        for lo in range(0, self.dim, step):
            part = slice(lo, lo + step)
            y = (sums[:, part] - counts.unsqueeze(1) * centre[part]) / scale  # [N, slice]
            frobenius += float((y**2).sum())
            projection += y @ directions[part]
            if self.dim <= n_blocks_:
                pieces.append(y)
            else:
                gram += y @ y.T
        if pieces:
            y = torch.cat(pieces, 1)
            gram = y.T @ y
        cross = float((gram**2).sum())  # tr(A^2), A = sum_j y_j y_j'
        k = n_blocks_ - 1  # degrees of freedom of the block covariance
        # unbiased tr(Cov^2) from A ~ Wishart(Cov, k) (Bai & Saranadasa 1996), and at least
        # the sum of the squared variances, which it can only exceed
        unbiased = (cross - frobenius**2 / k) / ((k + 2) * (k - 1))
        # the blocks' sums of ||g - m||^2 about the final mean m = shift + offset
        offset = directions[:, 0]
        distance = distance - 2 * (sums @ offset) + counts * float((offset**2).sum())
        r_mean = float(distance.sum()) / n
        spread = float(((distance - counts * r_mean) ** 2).sum()) * n_blocks_ / k
        return BlockMoments(
            max(float((variance**2).sum()), unbiased), (projection**2).sum(0) / k, spread,
            n_blocks_, cross,
        )

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

    def _intervals(self) -> dict[str, float]:
        """The percentile bootstrap interval of ``bias_l2`` (module docstring)."""
        if not self.n_bootstrap or self.truth is None:
            return {}
        sums, _, counts = self._stacked()
        n_boot, n_blocks_ = self.n_bootstrap, sums.shape[0]
        weights = poisson_weights(n_boot, n_blocks_, self.generator)  # [B, N]
        n = (weights @ counts).clamp_min(2)  # [B]
        bias_sq = torch.zeros(n_boot, dtype=torch.float64)
        step = max(1, SLICE_ELEMENTS // n_boot)
        for lo in range(0, self.dim, step):
            part = slice(lo, lo + step)
            centred_mean = weights @ sums[:, part] / n.unsqueeze(1)  # [B, slice]
            truth = self.truth[part].expand_as(centred_mean)
            if self.truth_se is not None:
                noise = torch.randn(
                    centred_mean.shape, generator=self.generator, dtype=torch.float64
                )
                truth = truth + self.truth_se[part] * noise
            bias_sq += ((self.shift[part] + centred_mean - truth) ** 2).sum(1)
        low, high = np.percentile(bias_sq.sqrt().numpy(), [2.5, 97.5])
        return {"bias_l2_ci_low": float(low), "bias_l2_ci_high": float(high)}


def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps) if dtype.is_floating_point else 0.0
