"""``bench train``: training runs with learning curves (see ``bench.training.train``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.cli import add_shared, integer, number
from bench.files import check_output_dir
from bench.sweep.store import default_out
from bench.threads import check_threads
from bench.training.train import make_spec, run_training


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
    add_shared(train, "--device", "--dtype", "--seed", seed="the first seed (default 0)")
    train.add_argument("--seeds", type=seeds_option, default=1, metavar="N|S1,S2,...",
                       help="train every estimator with N seeds (--seed, --seed + 1, ...) or "
                       "with the listed seeds; the training figure draws their mean and a "
                       "95%% band (default 1)")
    add_shared(train, "--threads",
               threads="torch CPU threads (default: the thread policy's); recorded in the table")
    train.add_argument("--out", default=None, help="run directory (default results/train-<time>)")
    add_shared(train, "--memory", "--no-progress")
    train.set_defaults(handler=main)


def seeds_option(text: str) -> int | list[int]:
    """``--seeds``: a count (``5``) or a comma-separated list of seeds (``0,3,7``)."""
    if "," in text:
        return [integer(part) for part in text.split(",") if part.strip()]
    return integer(text)


def main(args: argparse.Namespace) -> int:
    """Run ``bench train``; invalid input raises ValueError before any work starts."""
    check_threads(args.threads)
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
        memory=args.memory,
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
