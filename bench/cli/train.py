"""``bench train``: training runs with learning curves (see ``bench.training.train``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.sweep.store import RunStore, default_out
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
    train.add_argument("--steps", type=int, default=1000, help="training steps per estimator")
    train.add_argument("--eval-every", type=int, default=100, help="steps between records")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--samples", type=int, default=2, help="samples per estimate, K")
    train.add_argument("--variance-repeats", type=int, default=1000,
                       help="estimates R per gradient-variance measurement")
    train.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="set a problem or estimator option (repeatable)")
    train.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=0,
                       help="torch CPU threads (0: torch's default); recorded in the table")
    train.add_argument("--out", default=None, help="run directory (default results/train-<time>)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run ``bench train``; invalid input raises ValueError before any work starts."""
    if args.threads < 0:
        raise ValueError(f"invalid --threads {args.threads}: expected an integer >= 0")
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
        device=args.device,
        dtype=args.dtype,
    )
    out = Path(args.out) if args.out else default_out("train")
    RunStore(out).check_writable()
    for name, reason in spec.skipped:
        print(f"skipped {name}: {reason}")
    if args.threads:
        torch.set_num_threads(args.threads)
    table = run_training(spec, out, progress=not args.no_progress)
    last = table[table["step"] == table["step"].max()]
    summary = last.pivot_table(index="estimator", columns="metric", values="value")
    summary["wall_s"] = last.groupby("estimator")["wall_s"].first()
    print(f"at step {spec.steps}:")
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\nwrote {out}/train.parquet ({len(table)} rows)")
    return 0
