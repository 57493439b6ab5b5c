"""The training reproductions' settings and curves, trained through ``bench.training``'s
loop (``bench.training.loop.train_loop``: the same steps as ``bench train``, ``before_step``
included, and the same ``variance_trace``, the trace of the covariance, measured with the
estimator's state warmed up on the evaluated minibatch).

A curve records what the papers plot: the exact objective (``loss``) where the problem has
one (the toys), the gradient variance (``variance_trace``) of the estimator at its own current
parameters, the problem's own metrics and, for problems without an exact objective, the
running mean of the training cost (``train_loss``). Estimators with trainable parts (REBAR's
eta and temperature, RELAX's control variate) learn them alongside the model by their own
objective, as in Grathwohl et al. (2018), Algorithm 1.

References: Grathwohl et al. (2018), "Backpropagation through the Void", ICLR, Algorithm 1
and Fig. 1; Dong, Mnih, Tucker (2020), "DisARM", NeurIPS, Section 6.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.registry import estimator_class
from bench.training.loop import TrainRun, train_loop
from problems.base import Problem


@dataclass(frozen=True)
class TrainSettings:
    """How one curve is trained and recorded.

    Attributes:
        steps: Adam steps.
        lr: Adam learning rate.
        n_samples: K, samples per estimate.
        every: steps between records (step 0 and the last are always recorded).
        variance_repeats: estimates per variance measurement (0: no variance).
        train_loss: record the running mean of the cost at the estimator's samples per step
            (``train_loss``), for problems without an exact objective.
        metrics: record ``Problem.train_metrics`` (e.g. a test-set negative ELBO).
    """

    steps: int
    lr: float
    n_samples: int
    every: int
    variance_repeats: int = 0
    train_loss: bool = False
    metrics: bool = False

    @classmethod
    def from_scale(
        cls, scale: dict[str, Any], lr: float, n_samples: int, **options: bool
    ) -> TrainSettings:
        """Settings from a reproduction's scale (``steps``, ``every`` and optionally
        ``variance_repeats``)."""
        return cls(
            steps=scale["steps"],
            lr=lr,
            n_samples=n_samples,
            every=scale["every"],
            variance_repeats=scale.get("variance_repeats", 0),
            **options,
        )


def train_curve(
    template: Problem,
    name: str,
    options: Mapping[str, Any],
    settings: TrainSettings,
    seed: int,
    label: str,
    progress: bool,
) -> list[dict[str, Any]]:
    """Train a copy of ``template`` with estimator ``name``; return rows
    ``{series, step, metric, value}`` (``series`` = ``label``)."""
    run = TrainRun.start(copy.deepcopy(template), estimator_class(name)(dict(options)),
                         settings.n_samples, settings.lr, seed)
    records = train_loop(
        run, settings.steps, settings.every,
        lambda r: r.measure(settings.variance_repeats, objective=True, metrics=settings.metrics),
        label, progress,
    )
    return [
        {"series": label, "step": step, "metric": m, "value": v}
        for step, _, metrics in records for m, v in metrics.items()
        if m != "train_loss" or settings.train_loss
    ]
