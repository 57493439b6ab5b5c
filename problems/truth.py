"""How a problem's reference gradient is obtained: one typed declaration (``TruthSource``).

A problem states its truth source in ``Problem.truth_source`` (the case that holds whatever
the options) or derives it from its options and K in ``Problem.truth_of(options, n_samples)``.
The harness reads nothing else: cells (``bench.cell.truth``), ``bench list``, ``bench verify``
and the tests take the kind, an enumeration's size and a reference's estimator and sample
sizes from it. The kinds, as written in the ``truth`` column of cells.parquet:

* ``closed_form``: a derived formula (``Problem.truth``);
* ``quadrature``: a numerical integration whose error is far below Monte Carlo noise;
* ``enumeration``: a sum over every configuration of a discrete latent (``size`` of them);
* ``reference``: no exact gradient; the mean of ``repeats`` estimates with ``samples``
  samples each of the unbiased ``estimator``, carried with its standard error. A cell of
  that same estimator is compared with itself: it is marked (``self_reference``), and
  ``checked_by`` names the independent check of that estimator on the problem;
* ``none``: only truth-free metrics (variance, snr, timing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: a reference's default samples per estimate and estimates averaged
REFERENCE_SAMPLES = 100
REFERENCE_REPEATS = 1000


class TruthKind(StrEnum):
    """How the truth is obtained; the values are written into result files."""

    CLOSED_FORM = "closed_form"
    QUADRATURE = "quadrature"
    ENUMERATION = "enumeration"
    REFERENCE = "reference"
    NONE = "none"


EXACT_KINDS = frozenset({TruthKind.CLOSED_FORM, TruthKind.QUADRATURE, TruthKind.ENUMERATION})


@dataclass(frozen=True)
class TruthSource:
    """A problem's declared truth; build it with the class methods.

    Attributes:
        kind: see the module docstring.
        size: ``enumeration``: the configurations summed over (per factor where the latent
            factorizes).
        estimator: ``reference``: registry name of the unbiased estimator averaged.
        samples: ``reference``: samples K per estimate.
        repeats: ``reference``: estimates R averaged.
        checked_by: ``reference``: where the estimator itself is checked against an exact
            truth on this problem (a setting of its options or a test), or None.
    """

    kind: TruthKind
    size: int | None = None
    estimator: str | None = None
    samples: int | None = None
    repeats: int | None = None
    checked_by: str | None = None

    def __post_init__(self) -> None:
        reference = (self.estimator, self.samples, self.repeats)
        if (self.kind is TruthKind.ENUMERATION) != (self.size is not None):
            raise ValueError(f"truth {self.kind}: size {self.size!r} is for enumeration only")
        if self.size is not None and self.size < 1:
            raise ValueError(f"invalid enumeration size {self.size}: expected >= 1")
        if self.kind is TruthKind.REFERENCE:
            if self.estimator is None or (self.samples or 0) < 1 or (self.repeats or 0) < 2:
                raise ValueError(f"invalid reference truth {reference}: expected an estimator "
                                 "name, samples >= 1 and repeats >= 2")
        elif reference != (None, None, None) or self.checked_by is not None:
            raise ValueError(f"truth {self.kind}: estimator/samples/repeats are for reference")

    @classmethod
    def closed_form(cls) -> TruthSource:
        return cls(TruthKind.CLOSED_FORM)

    @classmethod
    def quadrature(cls) -> TruthSource:
        return cls(TruthKind.QUADRATURE)

    @classmethod
    def enumeration(cls, size: int) -> TruthSource:
        return cls(TruthKind.ENUMERATION, size=int(size))

    @classmethod
    def reference(cls, estimator: str, samples: int = REFERENCE_SAMPLES,
                  repeats: int = REFERENCE_REPEATS, checked_by: str | None = None) -> TruthSource:
        return cls(TruthKind.REFERENCE, estimator=estimator, samples=int(samples),
                   repeats=int(repeats), checked_by=checked_by)

    @classmethod
    def none(cls) -> TruthSource:
        return cls(TruthKind.NONE)

    @property
    def exact(self) -> bool:
        """Whether the truth is exact (closed form, quadrature or enumeration)."""
        return self.kind in EXACT_KINDS

    def self_reference(self, estimator: str) -> str | None:
        """Why a cell of ``estimator`` is no check of it (its truth is its own estimate),
        or None."""
        if self.kind is not TruthKind.REFERENCE or estimator != self.estimator:
            return None
        checked = f"; checked by {self.checked_by}" if self.checked_by else "; not checked"
        return f"reference is the estimator itself ({estimator}){checked}"

    def label(self) -> str:
        """One line for listings: the kind and its parameters."""
        if self.kind is TruthKind.ENUMERATION:
            return f"enumeration of {self.size:,} configurations"
        if self.kind is TruthKind.REFERENCE:
            return f"reference ({self.estimator}, K={self.samples}, R={self.repeats})"
        return str(self.kind)
