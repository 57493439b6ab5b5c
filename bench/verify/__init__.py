"""``bench verify``: check an estimator, built in or your own, against exact gradients.

For every problem with exact truth that the estimator applies to, at the stress settings of
``bench.verify.settings``, it tests whether the estimator's mean equals its declared target
(``estimators.targets``: the exact gradient for an unbiased estimator; for a biased one what
it is unbiased for, e.g. the relaxed objective's gradient at its temperature, computed by
quadrature or enumeration in ``bench.verify.targets``), at a number of estimates chosen for
power in every coordinate; compares its variance with a standard estimator's drawn from the
same random numbers; and checks that repeats are independent and the estimates deterministic
under the seed (``bench.verify.checks``). Tests are corrected for multiplicity: with ``alpha``
the probability that a correct estimator fails anywhere is at most ``alpha`` (Bonferroni over
the cells and, within a cell, over the coordinates), and fixed seeds make the outcome
reproducible. A cell's seed depends on the setting, K and ``seed`` only, not on the
estimator, so two estimators that draw their samples alike get the same samples (``against``
compares them sample for sample). Every cell runs under a time limit; an exception, a
``sys.exit`` or a timeout inside it is a failed cell.

From Python (e.g. in your own test suite)::

    from bench.verify import verify
    verify(MyEstimator).assert_ok()
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from tqdm import tqdm

from bench.cell.estimate import prepare
from bench.cell.seeds import derive_seed
from bench.config import DEFAULT_MEMORY, check_memory, check_seed
from bench.registry import current_registry, estimator_class, problem_class
from bench.verify.checks import (
    INCONCLUSIVE,
    BiasResult,
    ScoreFunction,
    check_bias,
    z_test,
)
from bench.verify.repeats import deterministic, repeat_leak
from bench.verify.report import Cell, Report
from bench.verify.settings import BOUND_SAMPLES, SAMPLES, SETTINGS, Setting
from bench.verify.targets import TargetValue, compute
from estimators import Estimator
from estimators.base import flatten
from estimators.targets import ExactGradient
from problems import Problem
from problems.base import Capability

#: standard estimators whose variance each cell is compared with: the first two that apply
#: (other than the estimator itself), drawn from the same random numbers
REFERENCES = ("reparam", "disarm", "vimco", "reinforce_loo", "reinforce")


class CellTimeout(Exception):
    """A cell ran past its time limit."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``CellTimeout`` in the block after ``seconds`` (SIGALRM; main thread only, a
    no-op elsewhere or without a limit)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise CellTimeout(f"timed out after {seconds:g} s (--cell-timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def plan(estimator: type[Estimator], quick: bool, problems: Sequence[str] | None = None,
         options: Mapping[str, Any] | None = None) -> list[tuple[Setting, int]]:
    """The (setting, K) cells of ``estimator`` with ``options``: every registered problem with
    exact truth it applies to (problems without a stress setting at their defaults), at every
    K it takes; only those of ``problems`` if given."""
    settings = [s for s in SETTINGS if not quick or s.quick]
    known = {s.problem for s in SETTINGS}
    settings += [Setting(name, ()) for name in current_registry().problems if name not in known]
    if problems is not None:
        settings = [s for s in settings if s.problem in problems]
    cells = []
    for setting in settings:
        problem = current_registry().problems.get(setting.problem)
        if problem is None or estimator.incompatibility(problem, dict(setting.options)) or (
                estimator.options_incompatibility(problem, dict(setting.options),
                                                  dict(options or {}))):
            continue
        multi = Capability.MULTI_SAMPLE in problem.capabilities(dict(setting.options))
        ks = BOUND_SAMPLES if multi else SAMPLES
        ks = [k for k in ks if estimator.sample_rule(k) is None]
        cells += [(setting, k) for k in (ks[:1] if quick else ks)]
    return cells


def _references(problem: Problem, n_samples: int, own: str, against: str | None) -> list[str]:
    """``against`` (where it applies), then the first two of ``REFERENCES`` that apply,
    other than ``own``."""
    registered = current_registry().estimators
    names = [
        name for name in ((against,) if against else ()) + REFERENCES
        if name != own and name in registered
        and registered[name].incompatibility(problem) is None
        and registered[name].sample_rule(n_samples) is None
    ]
    return list(dict.fromkeys(names))[: 3 if against else 2]


def _check_arguments(alpha: float, power_bias: float, max_repeats: int, budget_s: float | None,
                     cell_timeout: float | None, against: str | None) -> None:
    for name, value, valid, rule in (
        ("alpha", alpha, 0 < alpha < 1, "0 < alpha < 1"),
        ("power_bias", power_bias, 0 < power_bias < math.inf, "a finite number > 0"),
        ("max_repeats", max_repeats, 2 <= max_repeats <= 10**9, "an integer in 2..10^9"),
        ("budget_s", budget_s, budget_s is None or budget_s > 0, "a number of seconds > 0"),
        ("cell_timeout", cell_timeout, cell_timeout is None or 0 < cell_timeout < math.inf,
         "a finite number of seconds > 0"),
    ):
        if not valid:
            raise ValueError(f"invalid {name} {value!r}: expected {rule}")
    if against is not None:
        estimator_class(against)


def verify_one(
    estimator: str | type[Estimator],
    options: Mapping[str, Any] | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    alpha: float = 1e-3,
    power_bias: float = 0.05,
    max_repeats: int = 200_000,
    budget_s: float | None = None,
    cell_timeout: float | None = 600.0,
    against: str | None = None,
    problems: Sequence[str] | None = None,
    progress: bool = False,
    memory: int | None = None,
) -> Report:
    """Verify one estimator (a registry name or a class); see the module docstring.

    Args:
        options: the estimator's options (defaults for the rest).
        quick: one setting per problem at the smallest K it takes, one reference estimator
            (for test suites).
        alpha: probability that a correct estimator fails any test.
        power_bias: the bias, relative to each coordinate's scale (``checks.coordinate_scale``),
            that each test detects with probability 0.975 (R is chosen for it, up to
            ``max_repeats`` and ``budget_s``).
        budget_s: seconds the draws of one test may take (at the pilot's speed), if given: R
            then depends on the machine's speed, so the outcome is reproducible only on the
            same machine under the same load (without it, only on the seeds).
        cell_timeout: seconds one cell may take in all; past it the cell fails.
        against: a registered estimator drawn from the same random numbers in every cell
            (its paired difference is reported).
        problems: check only the settings of these problems.
        memory: the bytes one chunk of repeats may allocate (default 256 MiB).
    """
    _check_arguments(alpha, power_bias, max_repeats, budget_s, cell_timeout, against)
    for name in problems or ():
        problem_class(name)
    check_seed(seed)
    memory = DEFAULT_MEMORY if memory is None else check_memory(memory)
    cls = estimator_class(estimator) if isinstance(estimator, str) else estimator
    make: Callable[[], Estimator] = lambda: cls(dict(options or {}))  # noqa: E731
    declared = cls.declared_target()
    report = Report(cls.name, cls.unbiased, declared.describe(make().option_values), against)
    cells = plan(cls, quick, problems, options)
    run = _CellRunner(cls, make, seed, alpha / max(len(cells), 1), power_bias, max_repeats,
                      budget_s, 1 if quick else 2, against, memory)
    for setting, k in tqdm(cells, disable=not progress, unit="cell", desc=cls.name):
        try:
            with time_limit(cell_timeout):
                cell = run(setting, k, report)
        except (Exception, SystemExit) as err:  # a failing estimator is a finding
            cell = Cell(setting, k, "ERROR", message=_describe(err))
        if cell is not None:
            report.cells.append(cell)
    return report


def _describe(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"SystemExit: the estimator called sys.exit({err.code!r})"
    return f"{type(err).__name__}: {err}"


class _CellRunner:
    """Runs the checks of one (setting, K) cell; problems are built once per setting."""

    def __init__(self, cls: type[Estimator], make: Callable[[], Estimator], seed: int,
                 alpha: float, power_bias: float, max_repeats: int, budget_s: float | None,
                 n_references: int, against: str | None, memory: int) -> None:
        self.cls, self.make, self.seed, self.alpha = cls, make, seed, alpha
        self.power_bias, self.max_repeats, self.budget_s = power_bias, max_repeats, budget_s
        self.n_references, self.against, self.memory = n_references, against, memory
        self.built: dict[Setting, tuple[Problem, dict]] = {}
        self.leak_checked: set[Setting] = set()
        self.determinism_checked = False

    def __call__(self, setting: Setting, k: int, report: Report) -> Cell | None:
        if setting not in self.built:
            torch.manual_seed(derive_seed("problem", setting, self.seed))
            problem = problem_class(setting.problem)(dict(setting.options), dtype=torch.float64)
            self.built[setting] = (problem, problem.init_params())
        problem, point = self.built[setting]
        truth = problem.truth(point, k)
        if truth is None:
            report.skipped.append(f"{setting.label} K={k}: no exact truth")
            return None
        truth = flatten(truth.grad, repeated=False).double().cpu()
        cell_seed = derive_seed("cell", setting, k, self.seed)
        torch.manual_seed(cell_seed)
        estimator = self.make()
        state, _ = prepare(problem, estimator, point, k)
        if setting not in self.leak_checked:  # once per setting: repeats must not mix
            self.leak_checked.add(setting)
            report.leaks[setting.label] = repeat_leak(problem, estimator, state, point, k)
        if not self.determinism_checked:  # once per estimator: its own randomness is seeded
            self.determinism_checked = True
            if not deterministic(problem, self.make, point, k, cell_seed):
                report.nondeterministic.append(setting.label)
        target = compute(self.cls.declared_target(), problem, point, truth, estimator.option_values)
        names = _references(problem, k, self.cls.name, self.against)
        names = names[: self.n_references + (self.against in names)]
        references = []
        for name in names:
            torch.manual_seed(cell_seed)
            ref = estimator_class(name)()
            unbiased = ref.unbiased and isinstance(ref.declared_target(), ExactGradient)
            references.append((name, ref, prepare(problem, ref, point, k)[0],
                               truth if unbiased else None))
        references.append(("score", ScoreFunction(), {}, torch.zeros_like(truth)))
        checked = isinstance(target, TargetValue)
        bias = check_bias(problem, estimator, state, point, truth, k, cell_seed + 1, self.alpha,
                          self.power_bias, self.max_repeats,
                          target=target.value if checked else None,
                          error=target.error if checked else None,
                          budget_s=math.inf if self.budget_s is None else self.budget_s,
                          references=references, memory=self.memory)
        if self.against not in names:  # the paired difference is reported for --against only
            bias = dataclasses.replace(bias, paired=None)
        return self._cell(setting, k, bias, truth, target)

    def _cell(self, setting: Setting, k: int, bias: BiasResult, truth: torch.Tensor,
              target: TargetValue | str) -> Cell:
        standard = {n: v for n, v in (bias.references or {}).items()
                    if n not in (self.against, "score")}
        reference, ratio = None, None
        if standard:
            reference = min(standard, key=standard.get)
            ratio = bias.variance / standard[reference] if standard[reference] > 0 \
                else math.inf
        checked = isinstance(target, TargetValue)
        truth_p = None
        if checked and target.kind != "exact gradient":
            truth_p, _ = z_test(bias.mean, bias.se, bias.n_repeats, truth,
                                torch.zeros_like(truth))
        verdict = _verdict(self.cls.declared_target(), checked, bias, self.alpha)
        note = f"{bias.n_nonfinite} non-finite estimates left out" if bias.n_nonfinite else ""
        if bias.heavy_tailed:
            note = (f"heavy tails: kurtosis {bias.kurtosis:.3g} at R={bias.n_repeats}, too few "
                    "estimates for a reliable standard error")
        if not checked:
            note = f"target not computable: {target}"
        return Cell(setting, k, verdict, bias, reference, ratio, note,
                    target.kind if checked else None, truth_p)


def _verdict(declared, checked: bool, bias: BiasResult, alpha: float) -> str:
    if bias.n_nonfinite:
        return "ERROR"
    detected = bias.p_value < alpha
    if not checked:
        return "biased (declared)" if detected else "no bias detected"
    if bias.heavy_tailed:
        return "inconclusive"
    if detected:
        return "BIASED" if isinstance(declared, ExactGradient) else "OFF TARGET"
    return "inconclusive" if bias.detectable > INCONCLUSIVE else "ok"


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


__all__ = ["Cell", "CellTimeout", "Report", "verify", "verify_one"]
