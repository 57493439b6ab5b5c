"""Training runs: train a problem's model with each estimator and record learning curves.

Every estimator starts from the same initialization (``Problem.train_params``) and sees the
same minibatch order: the problem is built once, copied for each estimator and seed, and its
``next_batch`` hook draws from a generator seeded with the seed; the estimator's own
sampling uses the global torch RNG, seeded with the seed at the start of each run. With
several ``seeds`` every estimator is trained once per seed: the seeds vary the minibatch
order and the estimators' noise, while the problem instance (data split, initialization,
pretraining) is the one its own ``seed`` option makes, so that the figure's bands show the
spread that the estimator's randomness causes (``--set seed=S`` varies the instance).
A step is: ``next_batch``, ``before_step`` (e.g. GAN critic updates), one estimate of the
gradient of all trained tensors from ``n_samples`` samples (one surrogate, one backward),
and one Adam step. An estimator with parameters of its own (a learned control variate,
``estimators.base``) is set up once and takes one step of its own loss at every estimate
(``Estimator.backward``). See ``problems.base`` for the hooks.

Every ``eval_every`` steps (and at steps 0 and ``steps``) it records, per estimator:

* ``train_loss``: mean of the cost at the estimator's (hard) samples over the steps since
  the previous record, i.e. a running mean of the training minibatch objective;
* ``variance_trace``: the estimator's gradient variance (trace of the covariance of the
  estimated parameters' gradient) at the current parameters on the problem's fixed
  evaluation minibatch, from ``variance_repeats`` independent estimates of ``n_samples``
  samples (``bench.cell.estimate.gradient_variance``), as in the DisARM and RELAX papers,
  with the estimator's state as it would be at that step on the evaluated minibatch: a copy
  of the estimator, starting from its training state, runs its ``warmup_steps()`` warm-up
  steps at the current parameters on that minibatch (state carried, own parameters
  trained, exactly as a ``bench run`` cell warms up, but from the training state instead of
  a cold one), and the variance is measured with the state it reaches. Without this, a
  state learned on the random training minibatches (a moving-average baseline of their
  cost) is measured on another minibatch, whose cost it does not track: the variance then
  mostly measures the mismatch (``reinforce_ema`` read 100 times that of leave-one-out
  instead of the 5 times of ``bench run``). Estimators without state are unaffected, and the
  training run itself never sees the copy;
* the problem's ``train_metrics`` (e.g. ``test_nelbo``).

``wall_s`` is the training time since the start of that estimator's run: time spent in the
training steps only. It excludes these evaluations (variance and metrics), the problem's
construction (data loading, pretraining) and writing the table; on a GPU the device is
synchronized before the clock is read. Evaluations run under a forked RNG, so they do not
change the training trajectory.

Output: ``<out>/train.parquet``, one row per seed, estimator, step and metric
(``bench.schema.TRAIN``).

References: Dong, Mnih, Tucker (2020), "DisARM: An Antithetic Gradient Estimator for Binary
Latent Variables", NeurIPS, Section 6; Grathwohl et al. (2018), "Backpropagation through
the Void", ICLR, Section 6.2 (log-variance of the gradient during training).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from bench import env
from bench.config import (
    DEFAULT_MEMORY,
    DTYPES,
    check_count,
    check_dtype,
    check_known_options,
    check_memory,
    check_range,
    check_seed,
    select,
    single_settings,
)
from bench.config import names as config_names
from bench.files import write_table
from bench.registry import current_registry, estimator_class, problem_class
from bench.schema import TRAIN
from bench.training.loop import TrainRun, train_loop
from problems.base import Problem
from problems.options import OptionValue, resolve_options


@dataclass(frozen=True)
class TrainSpec:
    """A validated training run.

    Attributes:
        problem_options: every option of the problem, defaults filled in.
        estimators: ``(name, options)`` per estimator, options resolved.
        skipped: ``(name, reason)`` for estimators of ``all`` that cannot run.
    """

    problem: str
    problem_options: dict[str, OptionValue]
    estimators: tuple[tuple[str, dict[str, OptionValue]], ...]
    steps: int = 1000
    eval_every: int = 100
    lr: float = 1e-3
    n_samples: int = 2
    variance_repeats: int = 1000
    seeds: tuple[int, ...] = (0,)
    device: str = "cpu"
    dtype: str = "float32"
    memory: int = DEFAULT_MEMORY
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def seed(self) -> int:
        """The first seed."""
        return self.seeds[0]


#: the largest --lr: Adam moves each parameter by about lr per step
MAX_LR = 1e3
#: the most seeds of --seeds N: each is a full training run of every estimator
MAX_SEEDS = 10_000


def make_spec(
    problem: str,
    estimators: str | Sequence[str] = "all",
    settings: Sequence[str] = (),
    *,
    steps: int = 1000,
    eval_every: int = 100,
    lr: float = 1e-3,
    n_samples: int = 2,
    variance_repeats: int = 1000,
    seed: int = 0,
    seeds: int | Sequence[int] = 1,
    device: str = "cpu",
    dtype: str = "float32",
    memory: int | None = None,
) -> TrainSpec:
    """Validate names, ``NAME=VALUE`` settings and numbers into a ``TrainSpec`` (the checks
    of ``bench.config``, shared with ``bench run`` and ``bench verify``).

    ``memory``: the bytes one chunk of the variance's repeats may allocate (default 256 MiB,
    ``bench.cell.estimate.measured_chunk_size``).

    ``seeds``: a number of seeds (``seed``, ``seed + 1``, ...) or the list of seeds; each
    estimator is trained once per seed.

    A setting goes to the problem if it declares the option, else to every selected
    estimator that declares it. With ``all``, estimators that do not apply to the problem or
    need more than ``n_samples`` samples are skipped; named ones are an error.

    Raises:
        ValueError: naming the bad value, the rule and the valid choices.
    """
    names = config_names(estimators)
    problem_cls = problem_class(problem)
    chosen = select(names, current_registry().estimators, "estimator")
    _check_numbers(steps, eval_every, lr, n_samples, variance_repeats, dtype)
    chosen_seeds = _seed_list(seed, seeds)
    memory = DEFAULT_MEMORY if memory is None else check_memory(memory)
    env.check_device(device)
    given = single_settings(settings, "bench train")
    check_known_options(given, [problem_cls], [estimator_class(e) for e in chosen])
    problem_options = resolve_options(
        f"problem {problem!r}", problem_cls.options,
        {k: v for k, v in given.items() if k in problem_cls.options},
    )
    runs, skipped = _estimator_runs(problem_cls, problem_options, chosen, given, n_samples,
                                    named=list(names) != ["all"])
    if not runs:
        raise ValueError(f"no estimator applies to {problem}: {'; '.join(r for _, r in skipped)}")
    return TrainSpec(
        problem=problem, problem_options=problem_options, estimators=tuple(runs),
        steps=steps, eval_every=eval_every, lr=lr, n_samples=n_samples,
        variance_repeats=variance_repeats, seeds=chosen_seeds, device=device, dtype=dtype,
        memory=memory, skipped=tuple(skipped),
    )


def _check_numbers(
    steps: int, eval_every: int, lr: float, n_samples: int, variance_repeats: int, dtype: str
) -> None:
    check_count("--steps", steps, 1)
    check_count("--eval-every", eval_every, 1)
    check_count("--samples", n_samples, 1)
    check_count("--variance-repeats", variance_repeats, 2)
    if not (0 < lr <= MAX_LR and math.isfinite(lr)):
        raise ValueError(f"invalid --lr {lr:g}: expected a number > 0 and <= {MAX_LR:g} "
                         "(a larger Adam step only makes the parameters overflow)")
    check_dtype(dtype)


def _estimator_runs(
    problem_cls: type[Problem],
    problem_options: dict[str, OptionValue],
    chosen: Sequence[str],
    given: dict[str, str],
    n_samples: int,
    named: bool,
) -> tuple[list[tuple[str, dict[str, OptionValue]]], list[tuple[str, str]]]:
    """The ``(name, resolved options)`` of the estimators that run, and ``(name, reason)``
    of those skipped (an error for a ``named`` estimator)."""
    runs, skipped = [], []
    for name in chosen:
        cls = estimator_class(name)
        reason = cls.incompatibility(problem_cls, problem_options) or cls.sample_rule(n_samples)
        if reason is not None:
            if named:
                raise ValueError(reason)
            skipped.append((name, reason))
            continue
        options = resolve_options(
            f"estimator {name!r}", cls.options,
            {k: v for k, v in given.items() if k in cls.options and k not in problem_cls.options},
        )
        rule = (cls.options_rule(options, n_samples)
                or cls.options_incompatibility(problem_cls, problem_options, options))
        if rule is not None:
            raise ValueError(rule)
        runs.append((name, options))
    return runs, skipped


def _seed_list(seed: int, seeds: int | Sequence[int]) -> tuple[int, ...]:
    """``seeds`` consecutive seeds from ``seed``, or the given list (distinct)."""
    check_seed(seed)
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"invalid --seeds {seeds}: expected a number of seeds >= 1 or a "
                             "comma-separated list of seeds")
        check_range("--seeds", seeds, 1, MAX_SEEDS)
        check_seed(seed + seeds - 1)
        return tuple(range(seed, seed + seeds))
    chosen = tuple(int(s) for s in seeds)
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"invalid --seeds {','.join(map(str, chosen)) or '(empty)'}: expected "
                         "distinct seeds")
    for value in chosen:
        check_seed(value, "--seeds")
    return chosen


def train_one(
    problem: Problem,
    name: str,
    options: Mapping[str, OptionValue],
    spec: TrainSpec,
    progress: bool = True,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """Train ``problem`` (a fresh copy, left modified) with one estimator and one seed
    (default: the spec's first), through ``bench.training.loop.train_loop``.

    Returns:
        rows ``{estimator, seed, step, wall_s, metric, value}`` in step order.
    """
    seed = spec.seed if seed is None else seed
    estimator = estimator_class(name)(dict(options))
    run = TrainRun.start(problem, estimator, spec.n_samples, spec.lr, seed)
    records = train_loop(run, spec.steps, spec.eval_every,
                         lambda r: r.measure(spec.variance_repeats, memory=spec.memory),
                         f"{name} seed {seed}", progress)
    return [
        {"estimator": name, "seed": seed, "step": step, "wall_s": wall_s, "metric": m,
         "value": v}
        for step, wall_s, metrics in records for m, v in metrics.items()
    ]


def run_training(
    spec: TrainSpec, out: str | Path, progress: bool = True
) -> pd.DataFrame:
    """Train with every estimator of ``spec``; write and return ``<out>/train.parquet``."""
    out = Path(out)
    dtype = DTYPES[spec.dtype]
    template = problem_class(spec.problem)(
        spec.problem_options, device=spec.device, dtype=dtype
    )
    environment = env.environment(spec.device)
    identity = {
        "run_id": out.name,
        "problem": spec.problem,
        "problem_options": json.dumps(spec.problem_options, sort_keys=True),
        "n_samples": spec.n_samples,
        "variance_repeats": spec.variance_repeats,
        "lr": spec.lr,
        "created_utc": env.utc_now(),
        "device": spec.device,
        "dtype": spec.dtype,
        **{k: environment[k] for k in environment if k in TRAIN.names},
    }
    rows = []
    for seed in spec.seeds:
        for name, options in spec.estimators:
            for row in train_one(copy.deepcopy(template), name, options, spec, progress, seed):
                rows.append(identity | {"estimator_options": json.dumps(options, sort_keys=True)}
                            | row)
    table = pa.Table.from_pylist(rows, schema=TRAIN)
    write_table(out / "train.parquet", table)
    return table.to_pandas()
