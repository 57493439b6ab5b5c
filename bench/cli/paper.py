"""``bench paper``: run the sweeps and the training run behind the paper's figures, then draw them.

It regenerates the paper's figures from nothing: it runs the sweeps they need with
``bench.sweep.run.run_sweep`` and a training run with ``bench.training`` into one run
directory, then draws every figure of ``bench.report.figures`` from it. ``--full`` is the
configuration of the paper (hours). A re-run resumes the sweeps: finished cells are not
recomputed.

Estimators: by default a curated subset, ``CURATED`` (the classic baselines and one or two
representatives of each family: the classes that declare a ``paper_order``), because with every
registered estimator the run takes hours and no figure can be read; ``--estimators all``
runs every one, ``--estimators a,b`` the named ones. The temperature sweep runs only the
selected estimators that have a ``tau`` option and are biased (the relaxations whose bias
the temperature trades against variance; an unbiased estimator with a temperature, such as
REBAR, is not part of that trade-off).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from bench.cli import add_shared
from bench.cli.figures import add_drawing_options, read_tables, report_written, stderr_progress
from bench.files import check_output_dir
from bench.registry import current_registry, estimator_class
from bench.report.figures import make_figures, parse_formats
from bench.threads import check_threads
from estimators import ESTIMATORS


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
        train_steps, eval_every, train_lr, train_samples, variance_repeats, train_seeds: the
            training run (``train_seeds`` seeds per estimator: the figure's bands).
    """

    problems: str
    train_seeds: int
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


#: the estimators of the default figures, in the order of the paper's legend: those whose
#: class declares a ``paper_order`` (the classic baselines, then one or two of each family)
CURATED: tuple[str, ...] = tuple(sorted(
    (name for name, cls in ESTIMATORS.items() if cls.paper_order is not None),
    key=lambda name: ESTIMATORS[name].paper_order,
))
#: under 5 minutes of CPU on one thread on an idle machine (README: measured): every problem,
#: R = 1000, without the costliest cells. K stops at 16 (K = 32 was 30% of the
#: sweeps' cell time, 72% of it Gumbel-Rao, RELAX and REBAR; 1 to 16 still spans
#: the 1/K guide over four doublings); the temperature sweep runs at K = 4 (at K = 8, Gumbel-Rao's
#: K x M samples made it a fifth of the sweeps; their bias does not depend on K); training
#: records every 50 steps (each record warms up a copy of RELAX and NVIL: records were 86% of the
#: training time at every 20). The cells and records it kept from the earlier default (K to 32,
#: tau at K = 8, records every 20 steps) are the same, bit for bit. ``FULL`` is the paper's scale.
DEFAULT = PaperConfig(
    problems="all", train_seeds=3, samples=(1, 2, 4, 8, 16), repeats=1000, bootstrap=500,
    taus=(0.1, 0.2, 0.5, 1.0, 2.0), tau_samples=4,
    train_problem="bernoulli_vae", train_steps=400, eval_every=50, train_lr=3e-3,
    train_samples=2, variance_repeats=200,
)
#: the paper's figures
FULL = PaperConfig(
    problems="all", train_seeds=5, samples=(1, 2, 4, 8, 16, 32, 64, 128), repeats=10000,
    bootstrap=1000,
    taus=(0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0), tau_samples=8,
    train_problem="bernoulli_vae", train_steps=5000, eval_every=100, train_lr=1e-3,
    train_samples=2, variance_repeats=1000,
)


def select_estimators(text: str) -> list[str]:
    """``curated`` (the registered names of ``CURATED``), ``all``, or comma-separated names.

    Raises:
        ValueError: an unknown name, naming the valid ones.
    """
    registered = current_registry().estimators
    if text == "curated":
        return [name for name in CURATED if name in registered]
    if text == "all":
        return list(registered)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in registered]
    if unknown or not names:
        raise ValueError(f"invalid --estimators {text!r}: unknown {', '.join(unknown) or '(none)'}"
                         f"; valid: curated, all, or names of {', '.join(registered)}")
    return names


def by_samples(names: list[str], samples: tuple[int, ...]) -> dict[tuple[int, ...], list[str]]:
    """The estimators grouped by the K of ``samples`` they take (``sample_rule``: e.g.
    leave-one-out needs K >= 2), one sweep per group; an estimator that takes none is left
    out."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for name in names:
        ks = tuple(k for k in samples if estimator_class(name).sample_rule(k) is None)
        if ks:
            groups.setdefault(ks, []).append(name)
    return groups


def tau_estimators(names: list[str]) -> list[str]:
    """The estimators of the temperature sweep: those of ``names`` with a ``tau`` option
    that are biased."""
    classes = {n: estimator_class(n) for n in names}
    return [n for n, cls in classes.items() if "tau" in cls.options and not cls.unbiased]


def run_training(config: PaperConfig, out: Path, progress: bool,
                 estimators: list[str] | None = None) -> str | None:
    """Write ``out/train.parquet`` for the training figure with those of ``estimators``
    (default all) that apply; return why not, if it cannot."""
    if config.train_problem not in current_registry().problems:
        return f"training: skipped, problem {config.train_problem!r} is not registered"
    try:
        from bench.training.train import make_spec
        from bench.training.train import run_training as train
    except ImportError as err:
        return f"training: skipped, this version has no training loop ({err})"
    spec = make_spec(
        config.train_problem, "all", steps=config.train_steps, eval_every=config.eval_every,
        lr=config.train_lr, n_samples=config.train_samples,
        variance_repeats=config.variance_repeats, seeds=config.train_seeds,
    )
    if estimators is not None:
        chosen = tuple((n, o) for n, o in spec.estimators if n in estimators)
        if not chosen:
            return f"training: skipped, none of {', '.join(estimators)} applies"
        spec = replace(spec, estimators=chosen)
    train(spec, out, progress=progress)
    return None


def main(args: argparse.Namespace) -> int:
    """Run the sweeps and training of the paper's figures, then draw them."""
    from bench.sweep.run import run_sweep  # imports torch's heavy parts: not for --help

    config = FULL if args.full else DEFAULT
    out = Path(args.out or ("results/paper-full" if args.full else "results/paper"))
    formats = parse_formats(args.format)
    threads = check_threads(args.threads)
    estimators = select_estimators(args.estimators)
    check_output_dir(out)
    progress = not args.no_progress
    print(f"bench paper ({'full' if args.full else 'default'}): {asdict(config)}")
    print(f"estimators ({args.estimators}): {', '.join(estimators)}")
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    for samples, group in by_samples(estimators, config.samples).items():
        run_sweep(estimators=group, problems=config.problems, samples=samples,
                  repeats=config.repeats, bootstrap=config.bootstrap, out=out,
                  progress=progress, command=sys.argv, allow_code_change=args.allow_code_change,
                  plugins=args.plugin, threads=threads)
    relaxed = by_samples(tau_estimators(estimators), (config.tau_samples,)).get(
        (config.tau_samples,), [])
    if relaxed:
        run_sweep(estimators=relaxed, problems=config.problems, samples=[config.tau_samples],
                  repeats=config.repeats, bootstrap=config.bootstrap,
                  settings={"tau": list(config.taus)}, out=out, progress=progress,
                  command=sys.argv, allow_code_change=args.allow_code_change,
                  plugins=args.plugin, threads=threads)
    swept = time.perf_counter() - started
    note = run_training(config, out, progress, estimators)
    measured = time.perf_counter() - started
    written, notes = make_figures(read_tables(out), out / "figures", formats, args.size,
                                  progress=stderr_progress(not args.no_progress))
    drawn = time.perf_counter() - started - measured
    print(f"swept in {swept:.0f} s, trained in {measured - swept:.0f} s, drawn in {drawn:.0f} s")
    return report_written(written, [note, *notes] if note else notes)


def add_parser(subparsers) -> None:
    paper = subparsers.add_parser(
        "paper",
        help="regenerate the paper's figures from scratch",
        description="Run the sweeps and the training run behind the paper's figures, then "
        "draw them into OUT/figures. Default: a curated subset of the estimators (README: "
        "measured time); --full: the paper's configuration (hours). Re-running resumes the "
        "sweeps.",
    )
    paper.add_argument("--full", action="store_true", help="the paper's full configuration")
    paper.add_argument("--estimators", default="curated", metavar="curated|all|A,B",
                       help="curated (default: "
                       f"{', '.join(n for n in CURATED if n in ESTIMATORS)}), all registered "
                       "estimators, or a comma-separated list")
    add_shared(paper, "--threads", threads="torch CPU threads per cell and for training "
               "(default: the sweeps' policy, one thread per cell)")
    paper.add_argument("--out", default=None, metavar="DIR",
                       help="run directory (default results/paper or results/paper-full)")
    paper.add_argument("--allow-code-change", action="store_true",
                       help="resume --out although its cells were made by other code")
    add_shared(paper, "--no-progress")
    add_drawing_options(paper)
    paper.set_defaults(handler=main)
