"""The blocks of a cell's estimates, the covariance moments they give, and the bootstrap
interval of ``bias_l2`` resampled from them (``bench.cell.metrics.Accumulator`` keeps and
reads them).

**Blocks.** The estimates are grouped, in the order they are drawn, into at most
``BLOCKS`` consecutive blocks of m = ceil(R / blocks) estimates (m = 1, the estimates
themselves, when R is at most that), and only the blocks' sums are kept: ``[blocks, D]``
in float64, a few megabytes whatever R is. The estimates are independent and identically
distributed, so the block sums are too; everything below resamples or averages them.

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

#: the most blocks the bootstrap resamples (fewer when R is smaller)
BLOCKS = 500
#: the fewest blocks kept when D is so large that ``BLOCKS`` would exceed ``BLOCK_BYTES``
MIN_BLOCKS = 200
#: memory budget of the stored block sums (float64), above MIN_BLOCKS x D x 8 bytes
BLOCK_BYTES = 2**27
#: float64 elements of one slice of bootstrap replicates ([B, slice]) at the end
SLICE_ELEMENTS = 2**21
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


class Blocks:
    """The sums of consecutive blocks of ``size`` centred estimates ``[D]``, with the sums
    of their squared distances to the centre and their counts (module docstring).

    Args:
        dim: D, the number of coordinates.
        size: m, the estimates per block.
    """

    def __init__(self, dim: int, size: int) -> None:
        self.dim, self.size = dim, size
        self.sums: list[Tensor] = []  # [b, D] sums of centred estimates
        self.distances: list[Tensor] = []  # [b] float64 sums of squared distances
        self.counts: list[Tensor] = []  # [b] float64 counts
        self.pending_n = 0
        self.pending_s1 = torch.zeros(dim, dtype=torch.float64)
        self.pending_r = 0.0

    def __len__(self) -> int:
        return sum(len(b) for b in self.counts)

    def add(self, centred: Tensor, distance: Tensor) -> Tensor:
        """Add centred estimates ``[c, D]`` with their squared distances ``[c]`` to the blocks,
        in the order drawn; returns their sum ``[D]`` (from the blocks' sums, which read
        every row once)."""
        m, start, count = self.size, 0, centred.shape[0]
        total = torch.zeros(self.dim, dtype=torch.float64)
        if self.pending_n:
            start = min(m - self.pending_n, count)
            head = centred[:start].sum(0)
            total += head
            self.pending_s1 += head
            self.pending_r += float(distance[:start].sum())
            self.pending_n += start
            if self.pending_n == m:
                self.flush()
        full = (count - start) // m * m
        if full:
            block = slice(start, start + full)
            sums = centred[block].reshape(-1, m, self.dim).sum(1)
            total += sums.sum(0)
            self.sums.append(sums)
            self.distances.append(distance[block].reshape(-1, m).sum(1))
            self.counts.append(torch.full((full // m,), float(m), dtype=torch.float64))
        if start + full < count:
            self.pending_s1 = centred[start + full :].sum(0)
            total += self.pending_s1
            self.pending_r = float(distance[start + full :].sum())
            self.pending_n = count - start - full
        return total

    def flush(self) -> None:
        """Close the pending, partly filled block."""
        self.sums.append(self.pending_s1.clone().unsqueeze(0))
        self.distances.append(torch.tensor([self.pending_r], dtype=torch.float64))
        self.counts.append(torch.tensor([float(self.pending_n)], dtype=torch.float64))
        self.pending_n, self.pending_r = 0, 0.0
        self.pending_s1 = torch.zeros(self.dim, dtype=torch.float64)

    def stacked(self) -> tuple[Tensor, Tensor, Tensor]:
        """The block sums ``[N, D]``, their squared distances and counts ``[N]``."""
        return torch.cat(self.sums), torch.cat(self.distances), torch.cat(self.counts)


def block_moments(
    blocks: Blocks, n: int, directions: Tensor, variance: Tensor
) -> BlockMoments:
    """Covariance moments from the block sums of ``n`` estimates (see ``BlockMoments``);
    ``directions`` ``[D, k]``, the first the offset mean - shift; ``variance`` ``[D]``, the
    diagonal approximations where there are fewer than 4 blocks."""
    sums, distance, counts = blocks.stacked()
    n_blocks_, dim = sums.shape
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
    for lo in range(0, dim, step):
        part = slice(lo, lo + step)
        y = (sums[:, part] - counts.unsqueeze(1) * centre[part]) / scale  # [N, slice]
        frobenius += float((y**2).sum())
        projection += y @ directions[part]
        if dim <= n_blocks_:
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


def bootstrap_bias_l2(
    blocks: Blocks, shift: Tensor, truth: Tensor, truth_se: Tensor | None, n_boot: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """The percentile bootstrap interval of ``bias_l2`` = ||shift + mean of the centred
    estimates - truth|| from ``n_boot`` replicates (module docstring)."""
    sums, _, counts = blocks.stacked()
    n_blocks_, dim = sums.shape
    weights = poisson_weights(n_boot, n_blocks_, generator)  # [B, N]
    n = (weights @ counts).clamp_min(2)  # [B]
    bias_sq = torch.zeros(n_boot, dtype=torch.float64)
    step = max(1, SLICE_ELEMENTS // n_boot)
    for lo in range(0, dim, step):
        part = slice(lo, lo + step)
        centred_mean = weights @ sums[:, part] / n.unsqueeze(1)  # [B, slice]
        truth_b = truth[part].expand_as(centred_mean)
        if truth_se is not None:
            noise = torch.randn(centred_mean.shape, generator=generator, dtype=torch.float64)
            truth_b = truth_b + truth_se[part] * noise
        bias_sq += ((shift[part] + centred_mean - truth_b) ** 2).sum(1)
    low, high = np.percentile(bias_sq.sqrt().numpy(), [2.5, 97.5])
    return {"bias_l2_ci_low": float(low), "bias_l2_ci_high": float(high)}
