"""The ``bench`` command line: ``bench list``, ``bench run`` and the other subcommands.

Exit codes: 0 success; 1 the sweep finished but some cells failed (their rows say why:
an exception, a non-finite estimate, a timeout, a dead worker); 2 invalid input (unknown
name, bad value, unusable device, executor or output directory, a run directory that may
not be resumed), reported in one line before any work starts and with nothing written.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

import pandas as pd

from estimators import ESTIMATORS
from problems import PROBLEMS

#: modules that contribute subcommands: each has ``add_parser(subparsers)`` and ``main(args)``
EXTRA_COMMANDS: tuple[str, ...] = ("bench.train_cli", "bench.figures_cli")

EXIT_OK, EXIT_FAILED_CELLS, EXIT_BAD_INPUT = 0, 1, 2


def _options_text(options: dict) -> str:
    if not options:
        return "    (no options)"
    return "\n".join(
        f"    {name} = {opt.default!r}  ({opt.rule()}) {opt.help}" for name, opt in options.items()
    )


def list_main(args: argparse.Namespace) -> int:
    """Print estimators, problems, their options and which pairs apply."""
    print("Estimators")
    for name, est in ESTIMATORS.items():
        needs = ", ".join(sorted(est.requires)) or "nothing"
        bias = "unbiased" if est.unbiased else "biased"
        print(f"  {name}: {est.description} [{bias}; requires {needs}; K >= {est.min_samples}]")
        print(_options_text(est.options))
    print("\nProblems")
    for name, prob in PROBLEMS.items():
        gives = ", ".join(sorted(prob.provides))
        print(f"  {name}: {prob.description} [{prob.latent.value}; truth {prob.truth_kind}; "
              f"provides {gives}]")
        print(_options_text(prob.options))
    print("\nApplicable pairs (x) and skipped ones (.)")
    matrix = pd.DataFrame(
        {e: ["x" if est.incompatibility(p) is None else "." for p in PROBLEMS.values()]
         for e, est in ESTIMATORS.items()},
        index=list(PROBLEMS),
    )
    print(matrix.to_string())
    return EXIT_OK


def summary_table(cells: pd.DataFrame) -> str:
    """A readable summary of the measured cells of a sweep."""
    ok = cells[cells["status"] == "ok"]
    lines = []
    if len(ok):
        table = pd.DataFrame({
            "problem": ok["problem"],
            "estimator": ok["estimator"],
            "options": ok["estimator_options"].str.replace(r'[{}"\s]', "", regex=True),
            "K": ok["n_samples"],
            "truth": ok["truth"],
            "bias_l2": ok["bias_l2"],
            "bias_p": ok["bias_p_value"],
            "noise_floor": ok["bias_l2_noise_floor"],
            "var_trace": ok["variance_trace"],
            "mse": ok["mse"],
            "cosine": ok["cosine"],
            "ms/est": ok["time_per_estimate_s"] * 1e3,
        })
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    skipped = cells[cells["status"] == "skipped"]
    if len(skipped):
        lines.append(f"{len(skipped)} cell(s) skipped: the pair does not apply (see 'reason').")
    for _, row in cells[cells["status"] == "failed"].iterrows():
        lines.append(f"FAILED {row['problem']}/{row['estimator']} K={row['n_samples']}: "
                     f"{row['reason']}")
    return "\n".join(lines)


def run_main(args: argparse.Namespace) -> int:
    """Run a sweep, write Parquet tables and print a summary."""
    from bench.harness import default_out, run_sweep

    out = args.out or default_out()
    try:
        samples = [int(k) for k in args.samples.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"invalid --samples {args.samples!r}: expected K[,K...]") from None
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
    )
    print(summary_table(cells))
    print(f"\nwrote {out}/cells.parquet ({len(cells)} cells) and {out}/coords.parquet")
    return EXIT_FAILED_CELLS if (cells["status"] == "failed").any() else EXIT_OK


def add_run_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="measure estimators on problems against the true gradient",
        description="Measure bias, variance and cost of estimators on problems; write "
        "cells.parquet and coords.parquet.",
    )
    run.add_argument("--estimator", default="all", help="all, or a comma-separated list")
    run.add_argument("--problem", default="all", help="all, or a comma-separated list")
    run.add_argument("--samples", default="10", help="samples per estimate, K[,K...]")
    run.add_argument("--repeats", type=int, default=1000,
                     help="independent estimates R per cell (>= 2)")
    run.add_argument("--set", action="append", default=[], metavar="NAME=V[,V...]",
                     help="set or sweep a problem/estimator option (repeatable)")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    run.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                     help="floating-point type of parameters and samples")
    run.add_argument("--seed", type=int, default=0,
                     help="base seed; each cell derives its own from its key")
    run.add_argument("--bootstrap", type=int, default=1000,
                     help="Poisson-bootstrap replicates for the 95%% intervals (0: none)")
    run.add_argument("--out", default=None, help="run directory (default results/run-<time>)")
    run.add_argument("--retry-failed", action="store_true", help="re-run failed cells")
    run.add_argument("--allow-code-change", action="store_true",
                     help="resume --out although its cells were made by another git commit, "
                     "package or torch version")
    run.add_argument("--executor", default="local", choices=["local", "process", "ray"],
                     help="where cells run: in this process (default; the reference for "
                     "timings), a local process pool, or Ray tasks (docs/sweeps.md)")
    run.add_argument("--workers", type=int, default=None,
                     help="processes of --executor process (default: one per CPU, or per GPU "
                     "with --device cuda)")
    run.add_argument("--threads", type=int, default=None,
                     help="torch threads per cell (default: torch's own locally, CPUs // "
                     "workers for process, 1 on Ray, where a CPU cell requests that many CPUs)")
    run.add_argument("--ray-address", default=None,
                     help="Ray cluster to join (auto, HOST:PORT, ray://HOST:PORT); default: "
                     "start a local Ray instance")
    run.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                     help="stop a cell after this long; it becomes a failed row")
    run.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                     help="import MODULE and register its PROBLEMS and ESTIMATORS (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=run_main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark Monte Carlo gradient estimators."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    listing = subparsers.add_parser("list", help="estimators, problems, options, pairs")
    listing.set_defaults(handler=list_main)
    add_run_parser(subparsers)
    for module in EXTRA_COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        return handler(args)
    except ValueError as err:
        print(f"bench {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader went away, e.g. `bench list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; run the same command to resume",
              file=sys.stderr)
        return 130
