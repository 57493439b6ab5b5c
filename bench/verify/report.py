"""What ``bench verify`` found: one ``Cell`` per (setting, K), one ``Report`` per estimator.

A cell's verdict says how the estimator's mean compares with its declared target
(``estimators.targets``):

* ``ok``: on target (no difference detected at the power the cell reached);
* ``BIASED`` (target: the exact gradient) or ``OFF TARGET`` (any other target): a difference
  detected, a failure;
* ``inconclusive``: no difference found, but some coordinate could only detect a bias of more
  than half its scale (``checks.INCONCLUSIVE``);
* ``biased (declared)`` / ``no bias detected``: the target cannot be computed at this setting,
  so only the bias against the exact gradient is reported (no failure either way);
* ``ERROR``: an exception, ``sys.exit``, a timeout or a non-finite estimate (a failure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.verify.checks import BiasResult
from bench.verify.settings import Setting

#: verdicts that fail the estimator
FAILED = ("BIASED", "OFF TARGET", "ERROR")
#: verdicts of a cell whose target was checked
CHECKED = ("ok", "BIASED", "OFF TARGET", "inconclusive")


@dataclass(frozen=True)
class Cell:
    """One problem setting at one K, and what the checks found there.

    Attributes:
        target: how the target was computed (``exact gradient``, ``quadrature``,
            ``enumeration``), or None where it could not be (``message`` says why).
        truth_p: for a target other than the exact gradient, the p-value of "mean = exact
            gradient" from the same draws (the bias the estimator is declared to have).
    """

    setting: Setting
    n_samples: int
    verdict: str
    bias: BiasResult | None = None
    reference: str | None = None
    variance_ratio: float | None = None
    message: str = ""
    target: str | None = None
    truth_p: float | None = None

    @property
    def failed(self) -> bool:
        return self.verdict in FAILED

    def biased(self, alpha: float) -> bool:
        """Whether the cell shows a bias against the exact gradient at level ``alpha``."""
        if self.verdict == "biased (declared)":
            return True
        return self.truth_p is not None and self.truth_p < alpha

    def row(self) -> dict[str, Any]:
        b = self.bias
        paired = None if b is None or b.paired is None else b.paired
        return {
            "problem": self.setting.label,
            "K": self.n_samples,
            "R": None if b is None else b.n_repeats,
            "target": self.target,
            "p": None if b is None else b.p_value,
            "max_abs_z": None if b is None else b.max_abs_z,
            "detects": None if b is None else b.detectable,
            "cv": None if b is None else b.control,
            "bias_p": self.truth_p,
            "variance_trace": None if b is None else b.variance,
            "vs": self.reference,
            "var_ratio": self.variance_ratio,
            "paired_z": None if paired is None else paired[0],
            "max_diff": None if paired is None else paired[1],
            "verdict": self.verdict,
            "message": self.message,
        }


@dataclass
class Report:
    """Everything ``verify`` found for one estimator.

    Attributes:
        target: the declared target in words.
        against: the estimator drawn with common random numbers in every cell, if any.
    """

    estimator: str
    declared_unbiased: bool
    target: str = "the exact gradient"
    against: str | None = None
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
        """Nothing failed (also true when nothing could be checked: see ``verified``)."""
        return bool(self.cells) and not self.failures

    @property
    def verified(self) -> bool:
        """Nothing failed and the declared target was checked in at least one cell."""
        return self.ok and any(c.verdict in CHECKED for c in self.cells)

    def verdict(self) -> str:
        """The one-line verdict."""
        if not self.cells:
            return f"NOT VERIFIED: {self.estimator} applies to no problem with exact truth"
        if self.failures:
            return f"FAILED: {self.failures[0]}" + (
                f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else "")
        n = len(self.cells)
        checked = [c for c in self.cells if c.verdict in CHECKED]
        unchecked = [c for c in self.cells if c.verdict not in CHECKED]
        found = sum(c.verdict == "biased (declared)" for c in unchecked)
        claim = "unbiased" if self.declared_unbiased else "biased"
        if not checked:
            return (f"NOT VERIFIED: {self.estimator} (declared biased): biased as declared, "
                    f"bias detected in {found} of {n} settings; {self.target}")
        weak = sum(c.verdict == "inconclusive" for c in checked)
        detail = f"mean on target in {len(checked)} of {n} settings"
        if weak:
            detail += f" ({weak} inconclusive: too noisy for the power target)"
        if unchecked:
            detail += (f"; target not computable in {len(unchecked)}, bias detected in "
                       f"{found} of them")
        return (f"VERIFIED: {self.estimator} (declared {claim}; target: {self.target}): "
                f"{detail}; repeats independent and deterministic")

    def assert_ok(self) -> None:
        """Raise AssertionError with the failures (for a user's test suite)."""
        assert self.ok, self.verdict() + "".join(f"\n  {line}" for line in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "declared_unbiased": self.declared_unbiased,
            "target": self.target,
            "against": self.against,
            "ok": self.ok,
            "verified": self.verified,
            "verdict": self.verdict(),
            "failures": self.failures,
            "cells": [c.row() for c in self.cells],
            "repeat_leaks": self.leaks,
            "nondeterministic": self.nondeterministic,
            "skipped": self.skipped,
        }
