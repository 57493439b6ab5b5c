"""Streaming statistics of R gradient estimates against a reference gradient.

For estimates g_1..g_R in R^D and a true gradient t:

* per coordinate: mean m = (1/R) sum_r g_r and unbiased variance v;
* ``bias_l2`` = ||m - t||, with the noise floor sqrt(sum_c v_c / R + sum_c se_c(t)^2) that
  an unbiased estimator's ``bias_l2`` is of the order of (se(t) = 0 for an exact truth),
  and Bonferroni-corrected per-coordinate z-scores (m_c - t_c) / sqrt(v_c / R + se_c(t)^2)
  with the p-value of the largest, from Student's t with R - 1 degrees of freedom (the
  normal tail would call an unbiased estimator biased at small R: p ~ 1e-6 at R = 2);
* ``variance_trace`` = sum_c v_c (the trace of the covariance);
* ``mse`` = (1/R) sum_r ||g_r - t||^2 = ||m - t||^2 + (R - 1)/R * variance_trace;
* ``cosine`` = (1/R) sum_r <g_r, t> / (||g_r|| ||t||) (0 where a norm is 0);
* ``snr`` = ||m|| / sqrt(variance_trace) (Rainforth et al. 2018, "Tighter Variational
  Bounds are Not Necessarily Better", ICML, generalised to vectors).

Confidence intervals (95%) are percentile intervals of the Poisson bootstrap (Hanley &
MacGibbon 2006; Chamandy et al. 2012): each replicate weights every estimate by an
independent Poisson(1) count, which, unlike the multinomial bootstrap, can be accumulated
chunk by chunk in O(B * D) memory. For a reference truth with standard error se(t), each
replicate also draws t_b ~ N(t, se(t)^2), so the reference's own noise widens the bias and
mse intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import t as student_t
from torch import Tensor

#: cap on n_bootstrap * grad_dim, to bound the bootstrap's memory (two [B, D] float64 arrays)
BOOTSTRAP_ELEMENTS = 2**24


@dataclass
class Summary:
    """Per-coordinate and scalar statistics of a cell."""

    mean: np.ndarray
    variance: np.ndarray
    bias_z: np.ndarray | None
    scalars: dict[str, float]


class Accumulator:
    """Accumulates chunks of estimates ``[c, D]`` and summarises them.

    Args:
        dim: D, the number of gradient coordinates.
        truth: ``[D]`` reference gradient, or None (truth-free metrics only).
        truth_se: ``[D]`` standard error of a reference truth, or None if exact.
        n_bootstrap: bootstrap replicates B (0 disables intervals); reduced so that
            B * D <= ``BOOTSTRAP_ELEMENTS``.
        seed: seed of the bootstrap's own generator (independent of the sampling RNG).
    """

    def __init__(
        self,
        dim: int,
        truth: Tensor | None,
        truth_se: Tensor | None,
        n_bootstrap: int,
        seed: int,
    ) -> None:
        self.dim = dim
        self.truth = None if truth is None else truth.detach().double().reshape(-1).cpu()
        self.truth_se = None if truth_se is None else truth_se.detach().double().reshape(-1).cpu()
        self.n_bootstrap = min(n_bootstrap, max(BOOTSTRAP_ELEMENTS // max(dim, 1), 1))
        if n_bootstrap == 0:
            self.n_bootstrap = 0
        self.generator = torch.Generator().manual_seed(seed)
        self.shift: Tensor | None = self.truth
        self.n = 0
        self.n_nonfinite = 0
        self.s1 = torch.zeros(dim, dtype=torch.float64)
        self.s2 = torch.zeros(dim, dtype=torch.float64)
        self.cos_sum = 0.0
        b = self.n_bootstrap
        self.boot_n = torch.zeros(b, dtype=torch.float64)
        self.boot_s1 = torch.zeros(b, dim, dtype=torch.float64)
        self.boot_s2 = torch.zeros(b, dim, dtype=torch.float64)

    def add(self, chunk: Tensor) -> None:
        """Add estimates ``[c, D]`` (any device or float dtype)."""
        g = chunk.detach().double().cpu()
        finite = torch.isfinite(g).all(1)
        self.n_nonfinite += int((~finite).sum())
        g = g[finite]
        if g.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = g.mean(0)
        centred = g - self.shift  # [c, D]
        squared = centred**2
        self.n += g.shape[0]
        self.s1 += centred.sum(0)
        self.s2 += squared.sum(0)
        if self.truth is not None:
            norms = g.norm(dim=1) * self.truth.norm()
            dots = g @ self.truth
            self.cos_sum += float(torch.where(norms > 0, dots / norms, 0.0).sum())
        if self.n_bootstrap:
            weights = torch.poisson(
                torch.ones(self.n_bootstrap, g.shape[0], dtype=torch.float64),
                generator=self.generator,
            )  # [B, c]
            self.boot_n += weights.sum(1)
            self.boot_s1 += weights @ centred
            self.boot_s2 += weights @ squared

    def summary(self) -> Summary:
        """Statistics of the estimates added so far (at least two finite ones)."""
        if self.n < 2:
            raise ValueError(f"need at least 2 finite estimates, got {self.n}")
        n, shift = self.n, self.shift
        mean = shift + self.s1 / n
        variance = ((self.s2 - self.s1**2 / n) / (n - 1)).clamp_min(0)
        trace = float(variance.sum())
        truth_var = 0.0 if self.truth_se is None else float((self.truth_se**2).sum())
        scalars: dict[str, float] = {
            "variance_trace": trace,
            "snr": float(mean.norm() / math.sqrt(trace)) if trace > 0 else math.inf,
            "bias_l2_noise_floor": math.sqrt(trace / n + truth_var),
        }
        bias_z = None
        if self.truth is not None:
            bias = mean - self.truth
            se2 = variance / n + (0 if self.truth_se is None else self.truth_se**2)
            se = se2.sqrt()
            # zero variance: the bias is exact, so its z is 0 or infinite with the bias's sign
            signed_inf = torch.where(bias == 0, 0.0, bias.sign() * math.inf)
            bias_z = torch.where(se > 0, bias / se, signed_inf)
            max_z = float(bias_z.abs().max())
            scalars |= {
                "bias_l2": float(bias.norm()),
                "mse": float(bias.norm() ** 2 + (n - 1) / n * trace),
                "cosine": self.cos_sum / n,
                "bias_max_abs_z": max_z,
                "bias_p_value": min(1.0, self.dim * 2 * float(student_t.sf(max_z, n - 1))),
                "truth_l2": float(self.truth.norm()),
            }
        scalars |= self._intervals()
        return Summary(
            mean=mean.numpy(),
            variance=variance.numpy(),
            bias_z=None if bias_z is None else bias_z.numpy(),
            scalars=scalars,
        )

    def _intervals(self) -> dict[str, float]:
        if not self.n_bootstrap:
            return {}
        n = self.boot_n.clamp_min(2).unsqueeze(1)  # [B, 1]
        mean = self.shift + self.boot_s1 / n  # [B, D]
        trace = ((self.boot_s2 - self.boot_s1**2 / n) / (n - 1)).clamp_min(0).sum(1)  # [B]
        replicates = {"variance_trace": trace}
        if self.truth is not None:
            truth = self.truth.expand_as(mean)
            if self.truth_se is not None:
                noise = torch.randn(mean.shape, generator=self.generator, dtype=torch.float64)
                truth = truth + self.truth_se * noise
            bias_sq = ((mean - truth) ** 2).sum(1)
            replicates["bias_l2"] = bias_sq.sqrt()
            replicates["mse"] = bias_sq + (n.squeeze(1) - 1) / n.squeeze(1) * trace
        out: dict[str, float] = {}
        for name, values in replicates.items():
            low, high = np.percentile(values.numpy(), [2.5, 97.5])
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(low), float(high)
        return out
