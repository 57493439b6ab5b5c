"""``bench paper``: run the sweeps and the training run behind the paper's figures, then draw them.

It regenerates the paper's figures from nothing: it runs the sweeps they need with
``bench.sweep.run.run_sweep`` and a training run with ``bench.training`` into one run
directory, then draws every figure of ``bench.report.figures`` from it. The default
configuration takes a few minutes on two CPU cores; ``--full`` is the one of the paper
(hours). A re-run resumes the sweeps: finished cells are not recomputed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.cli.figures import add_drawing_options, read_tables, report_written
from bench.files import check_output_dir
from bench.report.figures import make_figures, parse_formats
from estimators import ESTIMATORS
from problems import PROBLEMS


@dataclass(frozen=True)
class PaperConfig:
    """What ``bench paper`` runs.

    Attributes:
        problems: the problems of the sweeps (``all`` or comma-separated names).
        samples: the K of the variance-against-K sweep (all estimators and problems).
        repeats: R, independent estimates per cell.
        bootstrap: Poisson-bootstrap replicates of the 95% intervals.
        taus: temperatures of the relaxed estimators' sweep, at K = ``tau_samples``.
        train_problem: the problem trained for the training-curve figure.
        train_steps, eval_every, train_lr, train_samples, variance_repeats: the training run.
    """

    problems: str
    samples: tuple[int, ...]
    repeats: int
    bootstrap: int
    taus: tuple[float, ...]
    tau_samples: int
    train_problem: str
    train_steps: int
    eval_every: int
    train_lr: float
    train_samples: int
    variance_repeats: int


#: a few minutes on two CPU cores
DEFAULT = PaperConfig(
    problems="all", samples=(1, 2, 4, 8, 16, 32), repeats=1000, bootstrap=500,
    taus=(0.1, 0.2, 0.5, 1.0, 2.0), tau_samples=8,
    train_problem="bernoulli_vae", train_steps=400, eval_every=20, train_lr=3e-3,
    train_samples=2, variance_repeats=200,
)
#: the paper's figures
FULL = PaperConfig(
    problems="all", samples=(1, 2, 4, 8, 16, 32, 64, 128), repeats=10000, bootstrap=1000,
    taus=(0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0), tau_samples=8,
    train_problem="bernoulli_vae", train_steps=5000, eval_every=100, train_lr=1e-3,
    train_samples=2, variance_repeats=1000,
)


def run_training(config: PaperConfig, out: Path, progress: bool) -> str | None:
    """Write ``out/train.parquet`` for the training figure; return why not, if it cannot."""
    if config.train_problem not in PROBLEMS:
        return f"training: skipped, problem {config.train_problem!r} is not registered"
    try:
        from bench.training.train import make_spec
        from bench.training.train import run_training as train
    except ImportError as err:
        return f"training: skipped, this version has no training loop ({err})"
    spec = make_spec(
        config.train_problem, "all", steps=config.train_steps, eval_every=config.eval_every,
        lr=config.train_lr, n_samples=config.train_samples,
        variance_repeats=config.variance_repeats,
    )
    train(spec, out, progress=progress)
    return None


def main(args: argparse.Namespace) -> int:
    """Run the sweeps and training of the paper's figures, then draw them."""
    from bench.sweep.run import run_sweep  # imports torch's heavy parts: not for --help

    config = FULL if args.full else DEFAULT
    out = Path(args.out or ("results/paper-full" if args.full else "results/paper"))
    formats = parse_formats(args.format)
    check_output_dir(out)
    progress = not args.no_progress
    print(f"bench paper ({'full' if args.full else 'default'}): {asdict(config)}")
    started = time.perf_counter()
    run_sweep(problems=config.problems, samples=config.samples, repeats=config.repeats,
              bootstrap=config.bootstrap, out=out, progress=progress, command=sys.argv,
              allow_code_change=args.allow_code_change, plugins=args.plugin)
    relaxed = [name for name, cls in ESTIMATORS.items() if "tau" in cls.options]
    if relaxed:
        run_sweep(estimators=relaxed, problems=config.problems, samples=[config.tau_samples],
                  repeats=config.repeats, bootstrap=config.bootstrap,
                  settings={"tau": list(config.taus)}, out=out, progress=progress,
                  command=sys.argv, allow_code_change=args.allow_code_change,
                  plugins=args.plugin)
    note = run_training(config, out, progress)
    measured = time.perf_counter() - started
    written, notes = make_figures(read_tables(out), out / "figures", formats, args.size)
    drawn = time.perf_counter() - started - measured
    print(f"measured in {measured:.0f} s, drawn in {drawn:.0f} s")
    return report_written(written, [note, *notes] if note else notes)


def add_parser(subparsers) -> None:
    paper = subparsers.add_parser(
        "paper",
        help="regenerate the paper's figures from scratch",
        description="Run the sweeps and the training run behind the paper's figures, then "
        "draw them into OUT/figures. Default: a few minutes on 2 CPU cores; --full: the "
        "paper's configuration (hours). Re-running resumes the sweeps.",
    )
    paper.add_argument("--full", action="store_true", help="the paper's full configuration")
    paper.add_argument("--out", default=None, metavar="DIR",
                       help="run directory (default results/paper or results/paper-full)")
    paper.add_argument("--allow-code-change", action="store_true",
                       help="resume --out although its cells were made by other code")
    paper.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_drawing_options(paper)
    paper.set_defaults(handler=main)
