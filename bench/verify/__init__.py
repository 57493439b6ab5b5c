"""``bench verify``: check an estimator, built in or your own, against exact gradients.

For every problem with exact truth that the estimator applies to, at the stress settings of
``bench.verify.settings``, it tests whether the estimator is biased (at a number of estimates
chosen for power), compares its variance with a standard estimator's, and checks that repeats
are independent and the estimates deterministic under the seed (``bench.verify.checks``). The
result is checked against what the estimator declares (``unbiased``): a declared-unbiased
estimator must pass every bias test. Tests are corrected for multiplicity: with ``alpha`` the
probability that a correct estimator fails anywhere is at most ``alpha`` (Bonferroni over the
cells and, within a cell, over the coordinates), and fixed seeds make the outcome
reproducible.

From Python (e.g. in your own test suite)::

    from bench.verify import verify
    verify(MyEstimator).assert_ok()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from bench.cell.estimate import flatten, prepare
from bench.cell.seeds import derive_seed
from bench.config import check_seed
from bench.verify.checks import BiasResult, check_bias, deterministic, repeat_leak, variance_of
from bench.verify.settings import BOUND_SAMPLES, SAMPLES, SETTINGS, Setting
from estimators import ESTIMATORS, Estimator, get_estimator
from problems import PROBLEMS, Problem
from problems.base import Capability

#: standard estimators whose variance each cell is compared with: the lower-variance of the
#: first two that apply (other than the estimator itself)
REFERENCES = ("reparam", "disarm", "vimco", "reinforce_loo", "reinforce")


@dataclass(frozen=True)
class Cell:
    """One problem setting at one K, and what the checks found there."""

    setting: Setting
    n_samples: int
    verdict: str  # ok, BIASED, inconclusive, biased (declared), no bias detected, ERROR
    bias: BiasResult | None = None
    reference: str | None = None
    variance_ratio: float | None = None
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict in ("BIASED", "ERROR")

    def row(self) -> dict[str, Any]:
        b = self.bias
        return {
            "problem": self.setting.label,
            "K": self.n_samples,
            "R": None if b is None else b.n_repeats,
            "bias_p": None if b is None else b.p_value,
            "max_abs_z": None if b is None else b.max_abs_z,
            "detects": None if b is None else b.detectable,
            "variance": None if b is None else b.variance,
            "vs": self.reference,
            "var_ratio": self.variance_ratio,
            "verdict": self.verdict,
            "message": self.message,
        }


@dataclass
class Report:
    """Everything ``verify`` found for one estimator."""

    estimator: str
    declared_unbiased: bool
    cells: list[Cell] = field(default_factory=list)
    leaks: dict[str, float] = field(default_factory=dict)
    nondeterministic: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # settings without exact truth

    @property
    def failures(self) -> list[str]:
        """One line per failed check, naming the problem and setting that caught it."""
        lines = [
            f"{self.estimator}: {c.verdict} on {c.setting.label} at K={c.n_samples}"
            + (f" (p={c.bias.p_value:.2g}, max |z|={c.bias.max_abs_z:.3g})" if c.bias else "")
            + (f": {c.message}" if c.message else "")
            for c in self.cells if c.failed
        ]
        lines += [f"{self.estimator}: repeats are not independent on {label}: "
                  f"d loss[r]/d params[s] = {leak:.3g} for s != r"
                  for label, leak in self.leaks.items() if leak != 0]
        lines += [f"{self.estimator}: not deterministic under the seed on {label}"
                  for label in self.nondeterministic]
        return lines

    @property
    def ok(self) -> bool:
        return bool(self.cells) and not self.failures

    def verdict(self) -> str:
        """The one-line verdict."""
        if not self.cells:
            return f"NOT VERIFIED: {self.estimator} applies to no problem with exact truth"
        if self.failures:
            return f"FAILED: {self.failures[0]}" + (
                f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else "")
        n = len(self.cells)
        weak = sum(c.verdict == "inconclusive" for c in self.cells)
        claim = "unbiased" if self.declared_unbiased else "biased"
        found = sum(c.verdict == "biased (declared)" for c in self.cells)
        detail = (f"no bias detected in {n} settings" if self.declared_unbiased
                  else f"bias detected in {found} of {n} settings")
        extra = f"; {weak} inconclusive (too noisy for the power target)" if weak else ""
        return f"VERIFIED: {self.estimator} (declared {claim}): {detail}{extra}; " \
               f"repeats independent and deterministic"

    def assert_ok(self) -> None:
        """Raise AssertionError with the failures (for a user's test suite)."""
        assert self.ok, self.verdict() + "".join(f"\n  {line}" for line in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "declared_unbiased": self.declared_unbiased,
            "ok": self.ok,
            "verdict": self.verdict(),
            "failures": self.failures,
            "cells": [c.row() for c in self.cells],
            "repeat_leaks": self.leaks,
            "nondeterministic": self.nondeterministic,
            "skipped": self.skipped,
        }


def plan(estimator: type[Estimator], quick: bool) -> list[tuple[Setting, int]]:
    """The (setting, K) cells of ``estimator``: every registered problem with exact truth it
    applies to (problems without a stress setting at their defaults), at every K it takes."""
    settings = [s for s in SETTINGS if not quick or s.quick]
    known = {s.problem for s in SETTINGS}
    settings += [Setting(name, ()) for name in PROBLEMS if name not in known]
    cells = []
    for setting in settings:
        problem = PROBLEMS.get(setting.problem)
        if problem is None or estimator.incompatibility(problem, dict(setting.options)):
            continue
        multi = Capability.MULTI_SAMPLE in problem.capabilities(dict(setting.options))
        ks = BOUND_SAMPLES if multi else SAMPLES
        ks = [k for k in ks if estimator.sample_rule(k) is None]
        cells += [(setting, k) for k in (ks[:1] if quick else ks)]
    return cells


def _references(problem: Problem, n_samples: int, own: str) -> list[str]:
    """The first two of ``REFERENCES`` that apply, other than ``own``."""
    names = [
        name for name in REFERENCES
        if name != own and name in ESTIMATORS
        and ESTIMATORS[name].incompatibility(problem) is None
        and ESTIMATORS[name].sample_rule(n_samples) is None
    ]
    return names[:2]


def verify_one(
    estimator: str | type[Estimator],
    options: Mapping[str, Any] | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    alpha: float = 1e-3,
    power_bias: float = 0.05,
    max_repeats: int = 100_000,
    progress: bool = False,
) -> Report:
    """Verify one estimator (a registry name or a class); see the module docstring.

    Args:
        options: the estimator's options (defaults for the rest).
        quick: one setting per problem at the smallest K it takes, one reference estimator
            (for test suites).
        alpha: probability that a correct estimator fails any bias test.
        power_bias: the bias, relative to the largest |true gradient| coordinate, that each
            bias test detects with probability 0.975 (R is chosen for it, up to max_repeats).
    """
    for name, value, valid, rule in (
        ("alpha", alpha, 0 < alpha < 1, "0 < alpha < 1"),
        ("power_bias", power_bias, 0 < power_bias < math.inf, "a finite number > 0"),
        ("max_repeats", max_repeats, 2 <= max_repeats <= 10**9, "an integer in 2..10^9"),
    ):
        if not valid:
            raise ValueError(f"invalid {name} {value!r}: expected {rule}")
    check_seed(seed)
    cls = get_estimator(estimator) if isinstance(estimator, str) else estimator
    make: Callable[[], Estimator] = lambda: cls(dict(options or {}))  # noqa: E731
    make()  # bad options fail here, before any work
    report = Report(cls.name, cls.unbiased)
    cells = plan(cls, quick)
    alpha_cell = alpha / max(len(cells), 1)
    built: dict[Setting, tuple[Problem, dict, bool]] = {}
    determinism_checked = False
    for setting, k in tqdm(cells, disable=not progress, unit="cell", desc=cls.name):
        try:
            if setting not in built:
                torch.manual_seed(derive_seed("problem", setting, seed))
                problem = PROBLEMS[setting.problem](dict(setting.options), dtype=torch.float64)
                built[setting] = (problem, problem.init_params(), False)
            problem, point, checked = built[setting]
            truth = problem.truth(point, k)
            if truth is None:
                report.skipped.append(f"{setting.label} K={k}: no exact truth")
                continue
            cell_seed = derive_seed(cls.name, setting, k, seed)
            torch.manual_seed(cell_seed)
            estimator = make()
            state, _ = prepare(problem, estimator, point, k)
            if not checked:  # once per setting: repeats must not mix
                report.leaks[setting.label] = repeat_leak(problem, estimator, state, point, k)
                built[setting] = (problem, point, True)
            if not determinism_checked:  # once per estimator: its own randomness is seeded
                determinism_checked = True
                if not deterministic(problem, make, point, k, cell_seed):
                    report.nondeterministic.append(setting.label)
            truth_flat = flatten(truth.grad, repeated=False).double().cpu()
            bias = check_bias(problem, estimator, state, point, truth_flat, k,
                              cell_seed + 1, alpha_cell, power_bias, max_repeats)
            reference, ratio = _variance_ratio(problem, cls.name, point, k, bias, cell_seed + 2,
                                               1 if quick else 2)
            report.cells.append(Cell(setting, k, _verdict(cls.unbiased, bias, alpha_cell,
                                                          power_bias), bias, reference, ratio,
                                     _note(bias)))
        except Exception as err:  # a crashing estimator is a finding, not a crash of verify
            report.cells.append(Cell(setting, k, "ERROR",
                                     message=f"{type(err).__name__}: {err}"))
    return report


def _variance_ratio(
    problem: Problem, own: str, point: dict, n_samples: int, bias: BiasResult, seed: int,
    n_references: int,
) -> tuple[str | None, float | None]:
    """The lower-variance of the first ``n_references`` standard estimators that apply, and
    the ratio of the verified estimator's variance to its."""
    variances = {
        name: variance_of(problem, get_estimator(name)(), point, n_samples,
                          min(bias.n_repeats, 20_000), seed)
        for name in _references(problem, n_samples, own)[:n_references]
    }
    if not variances:
        return None, None
    reference = min(variances, key=variances.get)
    ref = variances[reference]
    return reference, bias.variance / ref if ref > 0 else math.inf


def _verdict(unbiased: bool, bias: BiasResult, alpha: float, power_bias: float) -> str:
    if bias.n_nonfinite:
        return "ERROR"
    detected = bias.p_value < alpha
    if unbiased:
        if detected:
            return "BIASED"
        return "inconclusive" if bias.detectable > 2 * power_bias else "ok"
    return "biased (declared)" if detected else "no bias detected"


def _note(bias: BiasResult) -> str:
    if bias.n_nonfinite:
        return f"{bias.n_nonfinite} non-finite estimates left out"
    return ""


def verify(
    estimators: str | type[Estimator] | Sequence[str | type[Estimator]],
    options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Report | list[Report]:
    """``verify_one`` for an estimator, or for each of a list (``"a,b"`` or classes): returns
    one report, or a list of them."""
    if isinstance(estimators, str) and "," in estimators:
        estimators = [e.strip() for e in estimators.split(",") if e.strip()]
    if isinstance(estimators, (str, type)):
        return verify_one(estimators, options, **kwargs)
    return [verify_one(e, options, **kwargs) for e in estimators]


__all__ = ["Cell", "Report", "verify", "verify_one"]
