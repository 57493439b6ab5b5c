"""The checks of ``bench verify`` on one estimator and one problem setting.

* **Bias**, at a number of estimates R chosen for power *per coordinate*: a pilot of ``PILOT``
  estimates gives each coordinate's variance v_c; R is the smallest number at which a bias of
  ``power_bias * s_c`` in *every* coordinate c is detected with probability 0.975 by the test
  below, with s_c = max(|t_c|, ``FLOOR`` * max_j |t_j|) (small coordinates count on their own
  scale, down to a tenth of the largest): R = max_c (z_alpha + z_beta)^2 v_c /
  (power_bias s_c)^2, z_beta = 1.96, capped at ``max_repeats`` and at what the time budget
  allows at the pilot's speed (the cell then says what it can detect). Where that cap would
  leave the cell inconclusive (``INCONCLUSIVE``), R grows past ``max_repeats`` to the R at
  which every coordinate detects ``CONCLUSIVE`` of its scale (and the pilot's tails allow a
  reliable standard error), up to ``EXTEND`` times
  ``max_repeats`` and ``EXTEND_S`` seconds of draws at the pilot's speed (``_conclusive``).
  The test: per coordinate z_c = (|mean_c - t_c| - e_c)_+ / sqrt(v_c / R) against Student's
  t with R - 1 degrees of freedom, Bonferroni over the D coordinates, with e_c the target's
  numerical error (zero for exact truth); a coordinate within float64 rounding of the target
  is on target, and one with zero variance misses it when it misses by more than that.
* **Common random numbers and control variates.** Reference estimators are drawn from the
  same random stream as the estimator, sample for sample. A reference h of exactly known mean
  m (an unbiased built-in, mean t; or ``ScoreFunction``, the score, mean 0) gives the
  statistic g_c - beta_c (h_c - m_c), whose mean is that of g_c for any fixed beta_c;
  beta_c = Cov(g_c, h_c) / Var(h_c) from the pilot (independent of the test's draws) removes
  the share rho_c^2 of the variance the two have in common. The reference that most lowers
  the worst coordinate's variance on its scale, max_c v_c / s_c^2 (what sets R), is used where
  the pilot shows it at least halves it and adds no heavier tails (estimators that draw their
  samples as the reference does); else the test uses the estimator alone.
* **Variance** against a standard estimator of the same problem at the same K (pathwise where
  it applies, else the leave-one-out score function, else plain REINFORCE).
* **Independence of repeats** and **determinism**: ``bench.verify.repeats``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from scipy.special import ndtri, stdtr

from bench.cell.estimate import (
    CHUNK_BYTES,
    estimate_chunks,
    measured_chunk_size,
)
from estimators.base import Estimator, State, Surrogate
from problems.base import Params, Problem

#: estimates of the pilot run that sets R
PILOT = 400
#: z of the power target (probability 0.975 of detecting the target bias)
Z_POWER = 1.96
#: float64 rounding allowed for an exactly zero-variance coordinate, relative to max |t|
ZERO_VARIANCE_TOLERANCE = 1e-10
#: coordinates below this share of the largest |t_c| are held to its power at this share
FLOOR = 0.1
#: a cell is inconclusive when some coordinate could only detect a bias above this share of its
#: scale (a sign error is a bias of 2, a dropped term one of 1)
INCONCLUSIVE = 0.5
#: the test's standard error is trusted when the relative standard error of the variance it
#: rests on, sqrt((kurtosis - 1) / R), is at most this (heavier tails need a larger R)
TAIL_TOLERANCE = 0.5
#: kurtosis up to which a control variate's statistic counts as light-tailed whatever the
#: estimator's own (a Gaussian has 3)
LIGHT_TAILS = 10.0
#: a reference is used as control variate when it cuts the statistic's variance below this
#: share in the worst coordinate
CONTROL_GAIN = 0.5
#: where ``max_repeats`` would leave a cell inconclusive, R grows until every coordinate
#: detects this share of its scale (below ``INCONCLUSIVE``, for the pilot's error in the
#: variance), up to ``EXTEND`` times ``max_repeats`` and ``EXTEND_S`` seconds of draws at the
#: pilot's speed
CONCLUSIVE = 0.4
EXTEND = 10
EXTEND_S = 60.0


@dataclass(frozen=True)
class BiasResult:
    """What the bias and variance checks of one cell found.

    Attributes:
        n_repeats: R, the estimates the test used.
        p_value: Bonferroni p-value of "mean = target" over the coordinates.
        max_abs_z: the largest |z_c|.
        detectable: the largest over coordinates of the bias detected with probability
            0.975, relative to that coordinate's scale s_c.
        variance: trace of the covariance of one estimate.
        n_nonfinite: estimates with a non-finite coordinate (left out).
        mean: the mean estimate per coordinate.
        se: the standard error of ``mean`` (of the control-variate statistic, if one is used).
        control: the reference used as control variate, or None.
        references: each reference's trace of covariance, from the paired draws.
        paired: for the first reference, the largest |z| of the paired difference g - g' and
            the largest |g - g'| over all draws (0 when the two agree sample for sample).
        kurtosis: the largest kurtosis over coordinates of the test's statistic; with
            sqrt((kurtosis - 1) / R) above ``TAIL_TOLERANCE`` the standard error is not
            reliable (``heavy_tailed``).
    """

    n_repeats: int
    p_value: float
    max_abs_z: float
    detectable: float
    variance: float
    n_nonfinite: int
    mean: torch.Tensor | None = None
    se: torch.Tensor | None = None
    control: str | None = None
    references: dict[str, float] | None = None
    paired: tuple[float, float] | None = None
    kurtosis: float = 3.0

    @property
    def heavy_tailed(self) -> bool:
        """Whether the tails are too heavy for the standard error at this R."""
        return math.sqrt(max(self.kurtosis - 1, 0) / max(self.n_repeats, 1)) > TAIL_TOLERANCE


def paired_chunks(
    problem: Problem, prepared: Sequence[tuple[Estimator, State]], point: Params,
    n_samples: int, n_repeats: int, seed: int, memory: int = CHUNK_BYTES,
) -> Iterator[list[torch.Tensor]]:
    """Chunks ``[c, D]`` of ``n_repeats`` estimates of each prepared estimator, every one drawn
    from its own copy of the random stream seeded with ``seed`` (common random numbers: the
    same draws where they consume randomness alike, so all take the same chunks: the
    smallest that fits ``memory`` bytes for one of them)."""
    torch.manual_seed(seed)
    size = min(measured_chunk_size(problem, est, point, n_samples, n_repeats, state, memory)
               for est, state in prepared)
    rng = [torch.get_rng_state() for _ in prepared]
    streams = [estimate_chunks(problem, est, point, n_samples, n_repeats, state, size)
               for est, state in prepared]
    while True:
        chunks = []
        for i, stream in enumerate(streams):
            torch.set_rng_state(rng[i])
            chunks.append(next(stream, None))
            rng[i] = torch.get_rng_state()
        if chunks[0] is None:
            return
        yield [c.detach().double().cpu() for c in chunks]


@dataclass
class _Sums:
    """Running first and second moments of draws centred on a reference point."""

    n: int = 0
    s1: torch.Tensor | float = 0.0
    s2: torch.Tensor | float = 0.0
    s3: torch.Tensor | float = 0.0
    s4: torch.Tensor | float = 0.0

    def add(self, x: torch.Tensor) -> None:
        self.n += x.shape[0]
        self.s1 = self.s1 + x.sum(0)
        self.s2 = self.s2 + (x**2).sum(0)
        self.s3 = self.s3 + (x**3).sum(0)
        self.s4 = self.s4 + (x**4).sum(0)

    def kurtosis(self, rounding: float) -> torch.Tensor:
        """m4 / m2^2 per coordinate from the raw moments; 0 where the spread is at most
        ``rounding`` or within the cancellation error of the raw moments, about
        sqrt(eps) |mean| (a constant up to float64 rounding has no tails to speak of)."""
        n = max(self.n, 1)
        mu, e2, e3, e4 = self.s1 / n, self.s2 / n, self.s3 / n, self.s4 / n
        m2 = (e2 - mu**2).clamp_min(0)
        m4 = (e4 - 4 * mu * e3 + 6 * mu**2 * e2 - 3 * mu**4).clamp_min(0)
        floor = torch.maximum(torch.as_tensor(rounding), 1e-7 * torch.as_tensor(mu).abs())
        return torch.where(m2 > floor**2, m4 / m2.clamp_min(1e-300) ** 2, 0.0)

    def mean(self) -> torch.Tensor:
        return self.s1 / max(self.n, 1)

    def var(self) -> torch.Tensor:
        return ((self.s2 - self.s1**2 / max(self.n, 1)) / max(self.n - 1, 1)).clamp_min(0)


def _draw(
    problem: Problem, prepared: Sequence[tuple[Estimator, State]], point: Params,
    target: torch.Tensor, means: Sequence[torch.Tensor], n_samples: int, n_repeats: int,
    seed: int, control: tuple[int, torch.Tensor] | None, memory: int = CHUNK_BYTES,
) -> dict[str, object]:
    """Moments of the estimator (centred on the target), of each reference (centred on its
    mean), their cross moments with the estimator, of the statistic g - beta (h_i - mean_i)
    with ``control = (i, beta)``, and of g - g' for the first reference."""
    own, stat, diff = _Sums(), _Sums(), _Sums()
    refs = [_Sums() for _ in prepared[1:]]
    cross = [0.0 for _ in prepared[1:]]
    bad, worst = 0, 0.0
    for chunks in paired_chunks(problem, prepared, point, n_samples, n_repeats, seed, memory):
        finite = torch.isfinite(torch.stack([c.sum(1) for c in chunks])).all(0)
        bad += int((~finite).sum())
        g = chunks[0][finite] - target
        own.add(g)
        centred = [c[finite] - mean for c, mean in zip(chunks[1:], means, strict=True)]
        for i, c in enumerate(centred):
            refs[i].add(c)
            cross[i] = cross[i] + (g * c).sum(0)
        if centred:
            gap = chunks[0][finite] - chunks[1][finite]
            diff.add(gap)
            worst = max(worst, float(gap.abs().max()) if gap.numel() else 0.0)
        stat.add(g if control is None else g - control[1] * centred[control[0]])
    return {"own": own, "stat": stat, "refs": refs, "diff": diff, "cross": cross,
            "bad": bad, "worst": worst}


class ScoreFunction(Estimator):
    """The score mean_k grad log q(z_k), z_k ~ q drawn as the score-function estimators draw
    them: its mean is exactly zero (E_q[grad log q] = grad sum_z q(z) = 0), which makes it a
    control variate of known mean for every estimator whose samples it shares.

    References: Williams (1992), "Simple Statistical Gradient-Following Algorithms", Machine
    Learning 8.
    """

    name = "score"
    description = "the score function, mean zero (a control variate of bench verify)"
    requires = frozenset()
    unbiased = False
    supports_multi_sample = True

    def surrogate(self, problem: Problem, params: Params, n_samples: int, state: State):
        dist = problem.distribution(params)
        z = dist.sample((n_samples,))  # [K, R, *event]
        return Surrogate(loss=dist.log_prob(z).mean(0), samples=z)


def z_test(
    mean: torch.Tensor, se: torch.Tensor, n: int, target: torch.Tensor, error: torch.Tensor,
) -> tuple[float, float]:
    """Bonferroni p-value and max |z| of "mean = target" per coordinate (module docstring)."""
    dim = target.numel()
    scale = float(target.abs().max())
    miss = ((mean - target).abs() - error).clamp_min(0)
    # a miss within float64 rounding is no evidence of bias, also where rounding alone gives
    # an estimator of zero variance in exact arithmetic a tiny se (a huge z otherwise)
    exact = miss <= ZERO_VARIANCE_TOLERANCE * max(scale, 1e-300)
    z = torch.where(exact, 0.0, torch.where(se > 0, miss / se.clamp_min(1e-300), math.inf))
    max_z = float(z.abs().max())
    p_value = min(1.0, dim * 2 * float(stdtr(max(n - 1, 1), -max_z))) if n > 1 else math.nan
    return p_value, max_z


def coordinate_scale(target: torch.Tensor) -> torch.Tensor:
    """s_c = max(|t_c|, FLOOR * max |t|): the scale each coordinate's power is relative to."""
    return target.abs().clamp_min(FLOOR * float(target.abs().max()))


def check_bias(
    problem: Problem,
    estimator: Estimator,
    state: State,
    point: Params,
    truth: torch.Tensor,
    n_samples: int,
    seed: int,
    alpha: float,
    power_bias: float,
    max_repeats: int,
    *,
    target: torch.Tensor | None = None,
    error: torch.Tensor | None = None,
    budget_s: float = math.inf,
    references: Sequence[tuple[str, Estimator, State, torch.Tensor | None]] = (),
    memory: int = CHUNK_BYTES,
) -> BiasResult:
    """The test of "mean = target" of one cell at a power-chosen R (module docstring), for an
    estimator already set up and warmed up (``prepare``): the pilot and the test draw their own
    estimates.

    Args:
        truth: the exact gradient, flattened.
        target: what the estimator's mean is tested against (default: ``truth``).
        error: the target's numerical error per coordinate (default: 0).
        budget_s: seconds the test's draws may take, at the pilot's speed.
        references: prepared estimators drawn with common random numbers, each with its exact
            mean where it may serve as control variate (else None).
        memory: the bytes one chunk of repeats may allocate.
    """
    target = truth if target is None else target
    error = torch.zeros_like(target) if error is None else error
    z_alpha = float(ndtri(1 - alpha / (2 * target.numel())))
    scale = coordinate_scale(target)
    prepared = [(estimator, state)] + [(est, st) for _, est, st, _ in references]
    means = [truth if mean is None else mean for *_, mean in references]
    own, candidates, per_estimate = _pilot(problem, prepared, point, means, n_samples, seed,
                                           memory)
    control, variance = _control(own, candidates, scale)
    statistic = own if control is None else own - control[1] * candidates[control[0]][0]
    n_repeats = _test_repeats(variance, statistic, scale, z_alpha, power_bias, max_repeats,
                              budget_s, per_estimate)
    drawn = _draw(problem, prepared, point, target, means, n_samples, n_repeats, seed + 1,
                  control, memory)
    name = None if control is None else references[control[0]][0]
    return _result(drawn, [ref[0] for ref in references], name, n_repeats, target, error,
                   scale, z_alpha)


def _pilot(
    problem: Problem, prepared: Sequence[tuple[Estimator, State]], point: Params,
    means: Sequence[torch.Tensor], n_samples: int, seed: int, memory: int,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, bool]], float]:
    """The pilot's ``PILOT`` paired draws from ``seed``: the estimator's finite estimates
    ``[n, D]``, each reference's centred on its mean (with whether it may serve as control
    variate), and the seconds per estimate."""
    start = time.perf_counter()
    pilot = [torch.cat(chunks) for chunks in
             zip(*paired_chunks(problem, prepared, point, n_samples, PILOT, seed, memory),
                 strict=True)]
    per_estimate = (time.perf_counter() - start) / PILOT
    finite = torch.isfinite(torch.stack([c.sum(1) for c in pilot])).all(0)
    candidates = [(c[finite] - mean, mean is not None) for c, mean in
                  zip(pilot[1:], means, strict=True)]
    return pilot[0][finite], candidates, per_estimate


def _test_repeats(
    variance: torch.Tensor, statistic: torch.Tensor, scale: torch.Tensor, z_alpha: float,
    power_bias: float, max_repeats: int, budget_s: float, per_estimate: float,
) -> int:
    """R of the test from the pilot's per-coordinate ``variance`` of the test's statistic
    and its draws ``statistic`` ``[n, D]``: the power-chosen R (module docstring), capped
    at ``max_repeats`` and the budget, raised where that leaves the cell inconclusive
    (``_conclusive``)."""
    target_bias = power_bias * scale
    needed = float(((z_alpha + Z_POWER) ** 2 * variance / target_bias**2).max()) \
        if float(scale.max()) > 0 else 0.0
    affordable = budget_s / per_estimate if per_estimate > 0 else math.inf
    n_repeats = int(min(max_repeats, max(PILOT, min(math.ceil(needed), affordable))))
    tails = float(_kurtosis(statistic).max()) if statistic.shape[0] > 1 else 0.0
    conclusive = max(needed * (power_bias / CONCLUSIVE) ** 2,  # power, and light enough tails
                     2 * max(tails - 1, 0) / TAIL_TOLERANCE**2)
    return _conclusive(n_repeats, conclusive, max_repeats,
                       min(affordable, EXTEND_S / per_estimate if per_estimate > 0
                           else math.inf))


def _result(
    drawn: dict[str, object], references: Sequence[str], control: str | None, n_repeats: int,
    target: torch.Tensor, error: torch.Tensor, scale: torch.Tensor, z_alpha: float,
) -> BiasResult:
    """The ``BiasResult`` of the test's draws (``_draw``) against ``target``; ``references``
    the names of the references drawn, ``control`` the one used as control variate."""
    stat, n = drawn["stat"], drawn["stat"].n
    se = (stat.var() / max(n, 1)).sqrt()
    mean = stat.mean() + target
    p_value, max_z = z_test(mean, se, n, target, error)
    detectable = (z_alpha + Z_POWER) * float((se / scale).max()) if float(scale.max()) > 0 \
        else math.inf
    refs = {name: float(sums.var().sum()) for name, sums in
            zip(references, drawn["refs"], strict=True)}
    paired = None
    if references:
        d = drawn["diff"]
        _, paired_z = z_test(d.mean(), (d.var() / max(d.n, 1)).sqrt(), d.n,
                             torch.zeros_like(target), torch.zeros_like(target))
        paired = (paired_z, drawn["worst"])
    return BiasResult(n_repeats, p_value, max_z, detectable, float(drawn["own"].var().sum()),
                      drawn["bad"], mean, se, control, refs, paired,
                      float(stat.kurtosis(ZERO_VARIANCE_TOLERANCE * float(scale.max())).max()))


def _conclusive(n_repeats: int, conclusive: float, max_repeats: int, affordable: float) -> int:
    """R raised past ``max_repeats`` where the pilot shows that it would leave the cell
    inconclusive: to the R at which every coordinate detects ``CONCLUSIVE`` of its scale and
    the pilot's kurtosis k leaves a margin of 2 on sqrt((k - 1) / R) <= ``TAIL_TOLERANCE``
    (``conclusive``), at most ``EXTEND`` times ``max_repeats`` and what ``affordable`` allows.
    Cells that reach a conclusive power within ``max_repeats`` keep their R. The choice rests
    on the pilot alone (independent of the test's draws), so the test keeps its level."""
    if conclusive <= n_repeats:
        return n_repeats
    return int(max(n_repeats, min(math.ceil(conclusive), EXTEND * max_repeats, affordable)))


def _kurtosis(x: torch.Tensor) -> torch.Tensor:
    """Per-column kurtosis m4 / m2^2 of ``[n, D]`` draws (0 for a column constant up to
    rounding, relative to the largest column's spread)."""
    centred = x - x.mean(0)
    m2 = centred.pow(2).mean(0)
    rounding = (ZERO_VARIANCE_TOLERANCE * float(m2.max().sqrt())) ** 2
    return torch.where(m2 > rounding, centred.pow(4).mean(0) / m2.clamp_min(1e-300) ** 2, 0.0)


def _control(
    own: torch.Tensor, candidates: Sequence[tuple[torch.Tensor, bool]], scale: torch.Tensor,
) -> tuple[tuple[int, torch.Tensor] | None, torch.Tensor]:
    """The control variate (reference index and coefficients beta), or None, and the per
    coordinate variance of the test's statistic, from the pilot's draws ``[n, D]`` (the
    references' centred on their means; the flag says whether one may serve).

    What sets R is the worst coordinate's variance on its own scale, max_c v_c / s_c^2. Of the
    usable references, the one that lowers it most is used, if it lowers it below
    ``CONTROL_GAIN`` times the estimator's own and leaves the statistic light-tailed
    (largest kurtosis over coordinates at most ``LIGHT_TAILS``) or no heavier-tailed than the
    estimator: a control variate that trades variance for rare large deviations would make
    the test's standard error unreliable at the R it allows.
    """
    variance = own.var(0)
    worst = float((variance / scale**2).max())
    tails = max(float(_kurtosis(own).max()), LIGHT_TAILS)
    best, best_worst, best_variance = None, CONTROL_GAIN * worst, variance
    for i, (ref, usable) in enumerate(candidates):
        if not usable:
            continue
        ref_var = ref.var(0)
        cov = ((own - own.mean(0)) * (ref - ref.mean(0))).sum(0) / max(own.shape[0] - 1, 1)
        beta = torch.where(ref_var > 0, cov / ref_var.clamp_min(1e-300), 0.0)
        statistic = own - beta * ref
        reduced = statistic.var(0)
        reduced_worst = float((reduced / scale**2).max())
        if reduced_worst <= best_worst and float(_kurtosis(statistic).max()) <= tails:
            best, best_worst, best_variance = (i, beta), reduced_worst, reduced
    return best, best_variance
