"""``bench run``: measure estimators on problems and write the run's Parquet tables."""

from __future__ import annotations

import argparse
import sys

from bench.cli import EXIT_FAILED, EXIT_OK, add_shared, integer, number
from bench.report.summary import summary_table
from bench.sweep.store import default_out


def main(args: argparse.Namespace) -> int:
    """Run a sweep, write Parquet tables and print a summary."""
    from bench.sweep.run import run_sweep  # imports torch's heavy parts: not for --help

    out = args.out or default_out()
    try:
        samples = [integer(k) for k in args.samples.split(",") if k.strip()]
    except argparse.ArgumentTypeError:
        raise ValueError(f"invalid --samples {args.samples!r}: expected K[,K...] in ASCII "
                         "digits") from None
    cells = run_sweep(
        estimators=args.estimator,
        problems=args.problem,
        samples=samples,
        repeats=args.repeats,
        settings=args.set,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        bootstrap=args.bootstrap,
        out=out,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        command=sys.argv,
        executor=args.executor,
        workers=args.workers,
        threads=args.threads,
        ray_address=args.ray_address,
        cell_timeout=args.cell_timeout,
        plugins=args.plugin,
        allow_code_change=args.allow_code_change,
        memory=args.memory,
    )
    print(summary_table(cells))
    print(f"\nwrote {out}/cells.parquet ({len(cells)} cells) and {out}/coords.parquet")
    return EXIT_FAILED if (cells["status"] == "failed").any() else EXIT_OK


def add_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="measure estimators on problems against the true gradient",
        description="Measure bias, variance and cost of estimators on problems; write "
        "cells.parquet and coords.parquet.",
    )
    run.add_argument("--estimator", default="all", help="all, or a comma-separated list")
    run.add_argument("--problem", default="all", help="all, or a comma-separated list")
    run.add_argument("--samples", default="10", help="samples per estimate, K[,K...]")
    run.add_argument("--repeats", type=integer, default=1000,
                     help="independent estimates R per cell (>= 2)")
    run.add_argument("--set", action="append", default=[], metavar="NAME=V[,V...]",
                     help="set or sweep a problem/estimator option (repeatable)")
    add_shared(run, "--device", "--dtype", "--seed",
               seed="base seed; each cell derives its own from its key")
    run.add_argument("--bootstrap", type=integer, default=1000,
                     help="Poisson-bootstrap replicates for the 95%% intervals (0: none)")
    run.add_argument("--out", default=None, help="run directory (default results/run-<time>)")
    run.add_argument("--retry-failed", action="store_true", help="re-run failed cells")
    run.add_argument("--allow-code-change", action="store_true",
                     help="resume --out although its cells were made by other code (git "
                     "commit, package or torch version, or the code_hash of their sources)")
    run.add_argument("--executor", default="local", choices=["local", "process", "ray"],
                     help="where cells run: in this process (default; the reference for "
                     "timings), a local process pool, or Ray tasks (docs/sweeps.md)")
    run.add_argument("--workers", type=integer, default=None,
                     help="processes of --executor process (default: one per CPU, or per GPU "
                     "with --device cuda)")
    add_shared(run, "--threads", threads="torch threads per cell (default: 1 locally, CPUs // "
               "workers for process, 1 on Ray, where a CPU cell requests that many CPUs)")
    run.add_argument("--ray-address", default=None,
                     help="Ray cluster to join (auto, HOST:PORT, ray://HOST:PORT); default: "
                     "start a local Ray instance")
    run.add_argument("--cell-timeout", type=number, default=None, metavar="SECONDS",
                     help="stop a cell after this long; it becomes a failed row")
    add_shared(run, "--memory", "--no-progress")
    run.set_defaults(handler=main)
