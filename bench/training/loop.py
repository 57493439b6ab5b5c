"""The one training loop: ``bench train`` (``bench.training.train``) and the training
reproductions (``bench.reproduce.training``) both train through ``train_loop``.

A run starts every estimator from the problem's initialization (``Problem.train_params``)
with the same minibatch order: the estimator's own sampling uses the global torch RNG,
seeded with the seed at the start of the run, and ``next_batch`` draws from a generator
seeded with it. The estimator's own parameters, if any, are set up once (seeded). A step is
``bench.cell.estimate.train_step``: ``next_batch``, ``before_step``, one estimate of every
trained tensor from K samples, one Adam step (the estimator's own parameters take one step
of their own loss at the same estimate).

At step 0, every ``every`` steps and at the last step it records ``train_loss`` (from step 1:
the mean, over the steps since the previous record, of the cost at the estimator's hard
samples, i.e. a running mean of the training minibatch objective) and what ``evaluate``
measures. ``evaluate`` runs under a forked RNG, on the problem's fixed evaluation minibatch
(``reset_batch``), so measuring never changes the training trajectory; ``measure`` is the
evaluation both drivers share (``loss``, the exact objective; ``variance_trace``; the
problem's ``train_metrics``). ``wall_s`` is the time spent in training steps alone, the
device synchronised before each clock read.

``variance_trace`` is the trace of the covariance of the estimate at the current
parameters, from ``variance_repeats`` independent estimates, with the estimator's state as
it would be at that step on the evaluated minibatch: a copy of the estimator warms up
(``warmup_steps()`` steps) from its training state at the current parameters on that
minibatch, as a ``bench run`` cell warms up from a cold one (``bench.cell.estimate.prepare``),
and is measured with the state it reaches. Without this a moving-average baseline learned on
the random training minibatches is measured on another minibatch whose cost it does not
track, and the variance mostly measures the mismatch (``reinforce_ema`` read 100 times that
of leave-one-out instead of the 5 times of ``bench run``).

References: Dong, Mnih, Tucker (2020), "DisARM: An Antithetic Gradient Estimator for Binary
Latent Variables", NeurIPS, Section 6; Grathwohl et al. (2018), "Backpropagation through
the Void", ICLR, Section 6.2 and Algorithm 1.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from bench.cell.estimate import CHUNK_BYTES, gradient_variance, prepare, train_step
from bench.cell.timing import synchronize
from estimators.base import Estimator, State
from problems.base import Params, Problem


def eval_steps(steps: int, every: int) -> list[int]:
    """Steps at which metrics are recorded: 0, every ``every``, and the last."""
    return sorted({*range(0, steps + 1, every), steps})


@dataclass
class TrainRun:
    """One estimator training one problem: the trained tensors ``[1, *shape]`` (leaves),
    the optimizer, the estimator's per-repeat state and the minibatch generator."""

    problem: Problem
    estimator: Estimator
    n_samples: int
    train: Params
    optimizer: torch.optim.Optimizer
    state: State
    generator: torch.Generator
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None

    @classmethod
    def start(
        cls, problem: Problem, estimator: Estimator, n_samples: int, lr: float, seed: int,
        sgd_cosine: int | None = None,
    ) -> TrainRun:
        """Seed, initialize the trained tensors and Adam, set the estimator up (module
        docstring). With ``sgd_cosine=T``: plain SGD instead of Adam, its rate
        lr cos(pi t / (2 T)) at step t + 1 (the quarter-cosine decay of Mohamed et al.
        2020's deepmind/mc_gradients configuration)."""
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        train = {
            k: v.detach().unsqueeze(0).clone().requires_grad_(True)
            for k, v in problem.train_params().items()
        }
        schedule = None
        if sgd_cosine is None:
            optimizer: torch.optim.Optimizer = torch.optim.Adam(train.values(), lr=lr)
        else:
            optimizer = torch.optim.SGD(train.values(), lr=lr)
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda t: math.cos(math.pi / 2 * t / sgd_cosine))
        estimator.setup(problem, problem.init_params())  # its own parameters, if any (seeded)
        return cls(problem, estimator, n_samples, train, optimizer,
                   estimator.init_state(train), generator, schedule)

    def step(self, step: int) -> float:
        """One training step; returns the mean cost at the estimator's samples."""
        self.state, cost = train_step(self.problem, self.estimator, self.train, self.optimizer,
                                      self.n_samples, self.state, step, self.generator)
        if self.schedule is not None:
            self.schedule.step()
        return cost

    def current(self) -> Params:
        """The trained tensors now, without the repeat dimension (detached)."""
        return {k: v[0].detach() for k, v in self.train.items()}

    def variance_trace(self, point: Params, n_repeats: int, memory: int = CHUNK_BYTES) -> float:
        """``variance_trace`` at ``point`` on the current minibatch, from a copy of the
        estimator warmed up from its training state (module docstring), in chunks that fit
        ``memory`` bytes."""
        evaluator = copy.deepcopy(self.estimator)
        warmed, _ = prepare(self.problem, evaluator, point, self.n_samples, self.state,
                            setup=False)
        return gradient_variance(self.problem, evaluator, point, self.n_samples, n_repeats,
                                 warmed, memory)

    def measure(
        self, variance_repeats: int, objective: bool = False, metrics: bool = True,
        memory: int = CHUNK_BYTES,
    ) -> dict[str, float]:
        """The shared evaluation at the current parameters on the evaluation minibatch:
        ``loss`` (the exact objective, with ``objective`` and where the problem has one),
        ``variance_trace`` (with ``variance_repeats`` > 0) and, with ``metrics``, the
        problem's ``train_metrics``. Under a forked RNG."""
        current = self.current()
        devices = [self.problem.device] if self.problem.device.type == "cuda" else []
        values: dict[str, float] = {}
        with torch.random.fork_rng(devices=devices):
            self.problem.reset_batch()
            point = self.problem.load_train_params(current)
            if objective:
                exact = self.problem.objective(
                    {k: v.unsqueeze(0) for k, v in point.items()}, self.n_samples
                )
                if exact is not None:
                    values["loss"] = exact.sum().item()
            if variance_repeats:
                values["variance_trace"] = self.variance_trace(point, variance_repeats, memory)
            if metrics:
                values.update(self.problem.train_metrics(current))
        return values


def train_loop(
    run: TrainRun,
    steps: int,
    every: int,
    evaluate: Callable[[TrainRun], dict[str, float]],
    label: str = "",
    progress: bool = False,
) -> list[tuple[int, float, dict[str, float]]]:
    """Train ``run`` for ``steps`` steps, recording at ``eval_steps(steps, every)``.

    Returns:
        ``(step, wall_s, metrics)`` per record, in step order: ``train_loss`` (not at step 0)
        followed by what ``evaluate`` returns.
    """
    records = set(eval_steps(steps, every))
    wall_s = 0.0
    out = [(0, wall_s, evaluate(run))]
    losses: list[float] = []
    device = run.problem.device
    bar = tqdm(range(1, steps + 1), desc=label, disable=not progress, leave=False,
               dynamic_ncols=True, mininterval=0.5)
    for step in bar:
        synchronize(device)
        start = time.perf_counter()
        losses.append(run.step(step))
        synchronize(device)
        wall_s += time.perf_counter() - start
        if step in records:
            metrics = {"train_loss": sum(losses) / len(losses)} | evaluate(run)
            out.append((step, wall_s, metrics))
            bar.set_postfix(loss=f"{metrics['train_loss']:.4g}")
            losses = []
    bar.close()
    return out
