"""The contract of a reproduction, and what one run of it gives.

A reproduction reruns a published experiment with the suite's own problems and estimators.
It declares the estimators it needs (registry names); those not registered yet are reported
as ``waiting for estimator X (not registered)`` and left out of the run, never replaced by
something else. It has a short version (scaled down, for CI, marked ``short`` everywhere it
appears) and a full one (the paper's scale, or the largest this machine runs in minutes where
the paper's needs a dataset or days; the reproduction says which).

What it compares with the paper, it compares honestly:

* a ``Reference`` is a published number with its source (paper, figure or table, value), or,
  where the paper shows only a plot, the statement that the value is not recoverable;
* a ``Claim`` is a published qualitative statement (an ordering, a curve shape) or an exact
  value, checked on our run with its uncertainty: PASS, FAIL, "not resolved at this scale"
  (the interval does not decide it), or not checked (with the reason, e.g. an estimator still
  waiting). Orderings are decided by an interval on the difference (``interval_claim``: over
  seeds), exact values by a z-test on the measured value's standard error (``exact_claim``);
  never by a strict ``<`` on one run;
* exact values we derived ourselves (closed forms, enumeration) are labelled as ours.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pandas as pd

from bench.cell.moments import z_threshold
from bench.registry import current_registry

Mode = Literal["short", "full"]
#: differences from an exact value this small (relative, at least absolute) are float64
#: rounding, not disagreement
ROUNDING = 1e-12
MODES: tuple[Mode, ...] = ("short", "full")


@dataclass(frozen=True)
class Reference:
    """A published value, or the statement that it is not recoverable.

    Attributes:
        quantity: what is compared, e.g. ``final loss, reinmax, p=2``.
        source: paper and figure or table, e.g. ``Grathwohl et al. (2018), ICLR, Fig. 1``.
        value: the published number where the paper states it in text or a table, else None.
        note: how the paper shows it when there is no number (e.g. ``curve only``).
    """

    quantity: str
    source: str
    value: float | None = None
    note: str = ""

    @property
    def published(self) -> str:
        return (
            f"{self.value:.6g}"
            if self.value is not None
            else f"not recoverable ({self.note or 'plot only'})"
        )


@dataclass(frozen=True)
class Claim:
    """A published (or derived) statement checked on our run, with three outcomes.

    Attributes:
        text: the statement, e.g. ``REBAR's gradient log-variance is below REINFORCE's``.
        source: where the paper makes it.
        passed: True (PASS) or False (FAIL) when the run decides it; None when it does not:
            not resolved at this scale (``unresolved``), or not checked (an estimator
            waiting, no measurement).
        measured: the numbers behind the verdict (with their interval), or why it was not
            checked.
        unresolved: measured, but the interval does not decide the claim at this scale.
    """

    text: str
    source: str
    passed: bool | None
    measured: str
    unresolved: bool = False

    @property
    def verdict(self) -> str:
        if self.passed is None and self.unresolved:
            return "not resolved at this scale"
        return {True: "PASS", False: "FAIL", None: "not checked"}[self.passed]


#: two-sided level of the intervals that decide claims
CLAIM_LEVEL = 0.99


def interval_claim(
    text: str, source: str, differences: Sequence[float], quantity: str, shown: str = "",
) -> Claim:
    """The claim "difference < 0" decided by a ``CLAIM_LEVEL`` Student-t interval on the mean
    of ``differences`` (one per seed, or per paired record): PASS when the interval lies
    below 0, FAIL when above, else not resolved at this scale (also with fewer than two
    values, or an interval of zero width around exactly 0)."""
    from scipy.stats import t as student

    values = [float(v) for v in differences]
    n = len(values)
    if n == 0:
        return Claim(text, source, None, "not checked: no measurement")
    mean = sum(values) / n
    if n < 2:
        return Claim(text, source, None, f"{quantity}: difference {mean:.4g} from one value, "
                     f"no interval; {shown}".rstrip("; "), unresolved=True)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student.ppf(0.5 + CLAIM_LEVEL / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    measured = (f"{quantity}: difference {mean:.4g}, {CLAIM_LEVEL:.0%} interval "
                f"[{low:.4g}, {high:.4g}] over {n}; {shown}").rstrip("; ")
    if high < 0:
        return Claim(text, source, True, measured)
    if low > 0:
        return Claim(text, source, False, measured)
    return Claim(text, source, None, measured, unresolved=True)


def exact_claim(
    text: str, source: str, rows: Sequence[tuple[str, float, float, float]],
    alpha: float = 1e-3,
) -> Claim:
    """The claim that measured values equal exact ones: ``rows`` of (name, measured, standard
    error, exact), decided by ``z_agreement`` (PASS within the Bonferroni z, FAIL outside)."""
    if not rows:
        return Claim(text, source, None, "not checked: no measurement")
    ok, worst, critical = z_agreement([(m, s, e) for _, m, s, e in rows], alpha)
    shown = "; ".join(f"{name} {m:.6g} (se {s:.2g}, exact {e:.6g})" for name, m, s, e in rows)
    return Claim(text, source, ok, f"max |z| {worst:.2f} (critical {critical:.2f}): {shown}")


@dataclass
class Outcome:
    """What one run of a reproduction gives.

    Attributes:
        data: the run's measurements, one row per (series, setting, step, metric); written as
            Parquet.
        comparison: ours next to the published value per quantity (``comparison_row``).
        claims: the qualitative statements checked.
        waiting: one line per estimator left out because it is not registered.
        errors: one line per series that could not run although its estimator is
            registered (it does not apply, or it raised); the run then exits with code 1.
        notes: what differs from the paper (scale, settings), in words.
        figure: a plotnine figure of the run, or None when nothing could be drawn.
    """

    reproduction: str
    mode: Mode
    data: pd.DataFrame
    comparison: pd.DataFrame
    claims: list[Claim] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figure: Any = None
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Claim]:
        return [c for c in self.claims if c.passed is False]

    @property
    def ok(self) -> bool:
        """No checked claim failed and every registered estimator ran."""
        return not self.failed and not self.errors


def comparison_row(
    quantity: str, ours: float | None, reference: Reference | None, note: str = ""
) -> dict[str, Any]:
    """One row of ``Outcome.comparison``: our value, the published one and its source."""
    return {
        "quantity": quantity,
        "ours": ours,
        "published": None if reference is None else reference.published,
        "source": "" if reference is None else reference.source,
        "note": note,
    }


def curve_row(
    quantity: str, ours: float | None, source: str, note: str = "curve only"
) -> dict[str, Any]:
    """A comparison row for a value the paper shows only as a plot (``note`` says how)."""
    return comparison_row(quantity, ours, Reference(quantity, source, note=note))


def waiting_line(name: str) -> str:
    return f"waiting for estimator {name} (not registered)"


def not_checked(text: str, source: str, missing: Iterable[str]) -> Claim:
    """A claim that needs estimators not registered yet."""
    names = ", ".join(sorted(set(missing)))
    return Claim(text, source, None, f"not checked: waiting for estimator {names}")


class Reproduction(ABC):
    """Base class: subclasses set the class attributes and implement ``run``.

    Attributes:
        name: registry key (permanent: written into result files).
        title: one line saying what is reproduced.
        paper: the citation.
        target: the figure or table reproduced, e.g. ``Fig. 1``.
        estimators: the registry names the reproduction needs.
        runtime: CPU time of each mode on one thread of the reference machine (the run and
            its files, without the few seconds of imports), as text, e.g.
            ``{"short": "3 s", "full": "4 min"}``; measured, or marked ``(estimated)`` where
            it was extrapolated from a measured shorter run.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str]
    target: ClassVar[str]
    estimators: ClassVar[tuple[str, ...]]
    runtime: ClassVar[dict[str, str]]

    @classmethod
    def missing(cls) -> list[str]:
        """The needed estimators that are not registered."""
        return [name for name in cls.estimators if name not in current_registry().estimators]

    @classmethod
    def available(cls) -> list[str]:
        return [name for name in cls.estimators if name in current_registry().estimators]

    def __init__(self, *, steps: int | None = None, data: str | None = None) -> None:
        """Args:
        steps: training steps in place of the mode's own (training reproductions only).
        data: an image file for reproductions that train on data (others refuse it).
        """
        if steps is not None and not self.trains:
            raise ValueError(f"--steps does not apply to {self.name}: it does not train")
        if steps is not None and steps < 1:
            raise ValueError(f"invalid --steps {steps}: expected an integer >= 1")
        if data is not None and not self.takes_data:
            raise ValueError(f"--data does not apply to {self.name}: it uses no image data")
        self.steps = steps
        self.data_path = data

    #: whether the reproduction trains (``--steps`` applies)
    trains: ClassVar[bool] = False
    #: whether it takes an image file (``--data``)
    takes_data: ClassVar[bool] = False

    @abstractmethod
    def run(self, mode: Mode, seed: int, progress: bool) -> Outcome:
        """Run the reproduction; report progress on stderr when ``progress``."""

    def scaled(self, scale: dict[str, Any]) -> dict[str, Any]:
        """A copy of a mode's scale (``steps``, ``every``, ...) with ``--steps`` applied:
        records are then at most ``steps`` apart."""
        scale = dict(scale)
        if self.steps is not None:
            scale["steps"] = self.steps
            if "every" in scale:
                scale["every"] = max(1, min(scale["every"], self.steps))
        return scale

    def scale_note(self, mode: Mode, steps: int, full_steps: int, detail: str = "") -> list[str]:
        """The note that a run is scaled down (the short version or ``--steps``), or none."""
        if mode == "full" and self.steps is None:
            return []
        return [f"scaled down: {steps} steps (full version: {full_steps}{detail})"]

    def outcome(
        self,
        mode: Mode,
        data: pd.DataFrame,
        comparison: list[dict[str, Any]] | pd.DataFrame,
        claims: list[Claim],
        notes: list[str],
        figure: Any,
        errors: list[str],
    ) -> Outcome:
        """The run's ``Outcome``: ``comparison`` as rows of ``comparison_row``, and a waiting
        line for every needed estimator that is not registered."""
        waiting = [waiting_line(n) for n in self.missing()]
        return Outcome(
            self.name, mode, data, pd.DataFrame(comparison), claims, waiting, notes, figure, errors
        )


def z_agreement(
    rows: Sequence[tuple[float, float, float]], alpha: float = 1e-3
) -> tuple[bool, float, float]:
    """Whether measured values agree with exact ones within a Bonferroni z.

    Args:
        rows: ``(measured, standard error, exact)`` triples.

    Returns:
        (all agree, the largest |z|, the Bonferroni critical z).
    """
    critical = z_threshold(len(rows), alpha)

    def z(measured: float, se: float, exact: float) -> float:
        if abs(measured - exact) <= ROUNDING * max(abs(exact), 1.0):
            return 0.0  # float64 rounding, e.g. a variance that is exactly zero
        return abs(measured - exact) / se if se > 0 else math.inf

    worst = max((z(m, s, e) for m, s, e in rows), default=0.0)
    return worst <= critical, worst, critical


def log_mean(values: Sequence[float]) -> float:
    """Mean of log10 of positive values (the scale the papers plot variances on)."""
    return sum(math.log10(v) for v in values) / len(values)

