"""``bench train``: training runs with learning curves (see ``bench.training.train``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.cli import integer, number
from bench.config import INT64_MAX, check_range
from bench.files import check_output_dir
from bench.sweep.executors import OVERSUBSCRIPTION, cpu_count
from bench.sweep.store import default_out
from bench.training.train import make_spec, run_training

#: the largest --steps, --samples and --variance-repeats: 2^40 is weeks of training, and a
#: larger count a typo refused before the work starts (the tables hold 64-bit integers)
MAX_STEPS = 2**40
#: the largest --lr: Adam moves each parameter by about lr per step
MAX_LR = 1e3
#: the most seeds of --seeds N: each is a full training run of every estimator
MAX_SEEDS = 10_000


def add_parser(subparsers) -> None:
    """Register ``bench train``."""
    train = subparsers.add_parser(
        "train",
        help="train a problem's model with each estimator and record learning curves",
        description="Train with each estimator for --steps Adam steps from the same "
        "initialization and minibatch order; every --eval-every steps record the training "
        "loss, the problem's test metrics and the gradient variance; write train.parquet.",
    )
    train.add_argument("--problem", required=True, help="a problem name, e.g. bernoulli_vae")
    train.add_argument("--estimator", default="all", help="all, or a comma-separated list")
    train.add_argument("--steps", type=integer, default=1000, help="training steps per estimator")
    train.add_argument("--eval-every", type=integer, default=100, help="steps between records")
    train.add_argument("--lr", type=number, default=1e-3, help="Adam learning rate")
    train.add_argument("--samples", type=integer, default=2, help="samples per estimate, K")
    train.add_argument("--variance-repeats", type=integer, default=1000,
                       help="estimates R per gradient-variance measurement")
    train.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="set a problem or estimator option (repeatable)")
    train.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--seed", type=integer, default=0, help="the first seed (default 0)")
    train.add_argument("--seeds", type=seeds_option, default=1, metavar="N|S1,S2,...",
                       help="train every estimator with N seeds (--seed, --seed + 1, ...) or "
                       "with the listed seeds; the training figure draws their mean and a "
                       "95%% band (default 1)")
    train.add_argument("--threads", type=integer, default=0,
                       help="torch CPU threads (0: torch's default); recorded in the table")
    train.add_argument("--out", default=None, help="run directory (default results/train-<time>)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=main)


def seeds_option(text: str) -> int | list[int]:
    """``--seeds``: a count (``5``) or a comma-separated list of seeds (``0,3,7``)."""
    if "," in text:
        return [integer(part) for part in text.split(",") if part.strip()]
    return integer(text)


def main(args: argparse.Namespace) -> int:
    """Run ``bench train``; invalid input raises ValueError before any work starts."""
    check_range("--threads", args.threads, 0, OVERSUBSCRIPTION * cpu_count())
    check_range("--steps", args.steps, 1, MAX_STEPS)
    check_range("--seed", args.seed, -INT64_MAX - 1, INT64_MAX)
    if isinstance(args.seeds, int):
        check_range("--seeds", args.seeds, 1, MAX_SEEDS)
        check_range("--seed", args.seed + args.seeds - 1, -INT64_MAX - 1, INT64_MAX)
    else:
        for seed in args.seeds:
            check_range("--seeds", seed, -INT64_MAX - 1, INT64_MAX)
    check_range("--samples", args.samples, 1, MAX_STEPS)
    check_range("--variance-repeats", args.variance_repeats, 2, MAX_STEPS)
    if not 0 < args.lr <= MAX_LR:
        raise ValueError(f"invalid --lr {args.lr:g}: expected a number > 0 and <= {MAX_LR:g} "
                         "(a larger Adam step only makes the parameters overflow)")
    spec = make_spec(
        args.problem,
        args.estimator,
        args.set,
        steps=args.steps,
        eval_every=args.eval_every,
        lr=args.lr,
        n_samples=args.samples,
        variance_repeats=args.variance_repeats,
        seed=args.seed,
        seeds=args.seeds,
        device=args.device,
        dtype=args.dtype,
    )
    out = Path(args.out) if args.out else default_out("train")
    check_output_dir(out)
    for name, reason in spec.skipped:
        print(f"skipped {name}: {reason}")
    if args.threads:
        torch.set_num_threads(args.threads)
    table = run_training(spec, out, progress=not args.no_progress)
    last = table[table["step"] == table["step"].max()]
    summary = last.pivot_table(index="estimator", columns="metric", values="value")
    summary["wall_s"] = last.groupby("estimator")["wall_s"].mean()
    seeds = f" (mean over {len(spec.seeds)} seeds)" if len(spec.seeds) > 1 else ""
    print(f"at step {spec.steps}{seeds}:")
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\nwrote {out}/train.parquet ({len(table)} rows)")
    return 0
