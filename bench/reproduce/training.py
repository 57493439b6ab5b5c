"""The training loop of the training reproductions: one estimator, Adam, learning curves.

Unlike ``bench train`` (``bench.training``), which records a running mean of the sampled
cost, this loop records what the papers plot: the exact objective where the problem has one
(the toys), the gradient variance of the estimator at its own current parameters, and the
problem's own metrics. Each step is ``Estimator.step`` with ``train=True``, so estimators with
trainable parts (REBAR's eta and temperature, RELAX's control variate) learn them alongside
the model by the variance objective, as in Grathwohl et al. (2018), Algorithm 1.

Records run under a forked RNG, so measuring does not change the training trajectory.

References: Grathwohl et al. (2018), "Backpropagation through the Void", ICLR, Algorithm 1
and Fig. 1; Dong, Mnih, Tucker (2020), "DisARM", NeurIPS, Section 6.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from bench.cell.estimate import estimate_chunks
from estimators import get_estimator
from problems.base import Params, Problem


@dataclass(frozen=True)
class TrainSettings:
    """How one curve is trained and recorded.

    Attributes:
        steps: Adam steps.
        lr: Adam learning rate.
        n_samples: K, samples per estimate.
        every: steps between records (step 0 and the last are always recorded).
        variance_repeats: estimates per variance measurement (0: no variance).
        train_loss: record the running mean of a one-sample cost per step (``train_loss``),
            for problems without an exact objective.
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


def record_steps(steps: int, every: int) -> list[int]:
    return sorted({*range(0, steps + 1, every), steps})


def _sampled_cost(problem: Problem, params: Params) -> float:
    """One sample of the cost at ``params`` ``[1, ...]`` (under a forked RNG)."""
    with torch.random.fork_rng(), torch.no_grad():
        z = problem.distribution(params).sample((1,))
        return problem.cost(z, params).mean().item()


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
    problem = copy.deepcopy(template)
    estimator = get_estimator(name)(dict(options))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    start = {k: v.detach().clone() for k, v in problem.train_params().items()}
    estimator.setup(problem, problem.load_train_params(start))
    params = {k: v.unsqueeze(0).requires_grad_(True) for k, v in start.items()}  # [1, ...]
    optimizer = torch.optim.Adam(params.values(), lr=settings.lr)
    state = estimator.init_state(params)
    records = set(record_steps(settings.steps, settings.every))
    rows: list[dict[str, Any]] = []
    losses: list[float] = []

    def record(step: int) -> None:
        values: dict[str, float] = {}
        current = {k: v[0].detach() for k, v in params.items()}
        with torch.random.fork_rng():
            problem.reset_batch()
            point = problem.load_train_params(current)
            exact = problem.objective(
                {k: v.unsqueeze(0) for k, v in point.items()}, settings.n_samples
            )
            if exact is not None:
                values["loss"] = exact.sum().item()
            if settings.variance_repeats:
                chunks = list(
                    estimate_chunks(
                        problem,
                        estimator,
                        point,
                        settings.n_samples,
                        settings.variance_repeats,
                        state,
                    )
                )
                grads = torch.cat(chunks).double()
                values["variance"] = grads.var(0).mean().item()
            if settings.metrics:
                values.update(problem.train_metrics(current))
        if settings.train_loss and losses:
            values["train_loss"] = sum(losses) / len(losses)
            losses.clear()
        rows.extend(
            {"series": label, "step": step, "metric": m, "value": v} for m, v in values.items()
        )

    record(0)
    bar = tqdm(
        range(1, settings.steps + 1),
        desc=label,
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    for step in bar:
        problem.next_batch(step, generator)
        if settings.train_loss:
            losses.append(_sampled_cost(problem, params))
        out = estimator.step(problem, params, settings.n_samples, state, train=True)
        state = out.state
        optimizer.zero_grad(set_to_none=True)
        for key, tensor in params.items():
            tensor.grad = out.grads[key]
        optimizer.step()
        if step in records:
            record(step)
    bar.close()
    return rows
