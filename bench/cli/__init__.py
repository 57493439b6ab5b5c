"""The ``bench`` command line: one module per subcommand.

Each module of ``SUBCOMMANDS`` has ``add_parser(subparsers)``, which registers the
subcommand with its handler; ``build_parser`` then gives every subcommand the options all
share (``--plugin``). Exit codes: 0 success; 1 the work finished but some of it failed
(cells whose rows say why: an exception, a non-finite estimate, a timeout, a dead worker;
or no figure could be drawn); 2 invalid input (unknown name, bad value, unusable device,
executor or output directory, a run directory that may not be resumed, a broken plugin),
reported in one line before any work starts and with nothing written; 130 interrupted.

This module imports nothing heavy: ``main`` sets the thread policy (``bench.threads``)
before the subcommands import torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from bench import threads

#: the subcommands, in the order ``bench --help`` lists them
SUBCOMMANDS: tuple[str, ...] = (
    "bench.cli.list",
    "bench.cli.run",
    "bench.cli.train",
    "bench.cli.figures",
    "bench.cli.table",
    "bench.cli.paper",
    "bench.cli.verify",
    "bench.cli.reproduce",
)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class StoreOnce(argparse.Action):
    """Store an option's value, refusing the option given twice (argparse would keep the
    last one silently)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = namespace.__dict__.setdefault("_given", set())
        if self.dest in given:
            parser.error(f"{option_string} is given more than once; give it once"
                         + (" with a comma-separated list" if self.dest in LISTS else ""))
        given.add(self.dest)
        setattr(namespace, self.dest, values)


#: options whose value is a comma-separated list
LISTS = {"estimator", "problem", "samples", "format"}


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, and whose single-valued options
    may be given only once."""

    def add_argument(self, *args, **kwargs):
        if kwargs.get("action", "store") == "store" and args and args[0].startswith("-"):
            kwargs["action"] = StoreOnce
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def integer(text: str) -> int:
    """An argparse type: an integer written in ASCII digits (``int`` accepts ``١٠``)."""
    stripped = text.strip()
    if not stripped.isascii():
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}: use ASCII digits 0-9")
    try:
        return int(stripped)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


def number(text: str) -> float:
    """An argparse type: a real number written in ASCII."""
    stripped = text.strip()
    if not stripped.isascii():
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: use ASCII digits 0-9")
    try:
        return float(stripped)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None


def memory_size(text: str) -> int:
    """An argparse type for ``--memory``: a size in bytes (``bench.config.parse_memory``)."""
    from bench.config import parse_memory  # imports torch: not at module level (--help)

    try:
        return parse_memory(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("invalid --memory ")) from None


def threads_count(text: str) -> int:
    """An argparse type for ``--threads``: an integer (its range: ``bench.threads``)."""
    return integer(text)


#: the options several subcommands share, defined once: name -> argparse keywords
SHARED: dict[str, dict] = {
    "--device": {"default": "cpu", "help": "cpu, cuda or cuda:N"},
    "--dtype": {"default": "float32", "choices": ["float32", "float64"],
                "help": "floating-point type of parameters and samples"},
    "--seed": {"type": integer, "default": 0, "help": "base seed"},
    "--threads": {"type": threads_count, "default": None,
                  "help": "torch CPU threads (default: the thread policy's, bench.threads)"},
    "--no-progress": {"action": "store_true", "help": "no progress bar"},
    "--memory": {"type": memory_size, "default": None, "metavar": "SIZE",
                 "help": "memory budget of one chunk of repeats, e.g. 512MiB or 2GB "
                 "(default 256MiB); a chunk takes as many repeats as its measured footprint "
                 "fits, so peak memory stays near the base plus this"},
}


def add_shared(parser: argparse.ArgumentParser, *names: str, **helps: str) -> None:
    """Add the shared options ``names`` (keys of ``SHARED``) to a subcommand's parser;
    ``helps`` overrides a help text by option (``threads="..."``), the rest is shared."""
    for name in names:
        kwargs = dict(SHARED[name])
        key = name.lstrip("-").replace("-", "_")
        if key in helps:
            kwargs["help"] = helps[key]
        parser.add_argument(name, **kwargs)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``bench`` parser; with ``only`` (a subcommand's name), that subcommand alone, so
    that ``bench run`` does not import what only others need (plotnine for figures)."""
    parser = Parser(prog="bench", description="Benchmark Monte Carlo gradient estimators.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        if only is None or module.rsplit(".", 1)[1] == only:
            importlib.import_module(module).add_parser(subparsers)
    for sub in subparsers.choices.values():
        sub.add_argument(
            "--plugin", action="append", default=[], metavar="MODULE",
            help="import MODULE (from the current directory or PYTHONPATH) and add its "
            "PROBLEMS and ESTIMATORS to this command's registry (repeatable)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bench``; return its exit code (see the module docstring)."""
    threads.apply()
    # no list(): importing the subcommand bench.cli.list shadows it in this module
    words = [*(sys.argv[1:] if argv is None else argv)]
    names = [module.rsplit(".", 1)[1] for module in SUBCOMMANDS]
    command = " ".join(["bench", *[w for w in words[:1] if w in names]])  # before parsing
    try:
        parser = build_parser(words[0] if words and words[0] in names else None)
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:  # --help, or a usage error already printed in one line
            return stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
        command = f"bench {args.command}"
        if getattr(args, "out", None) is not None and not args.out.strip():
            raise ValueError(f"--out {args.out!r}: empty path; name a directory or file, or "
                             "leave --out out for the default")
        if not args.plugin:
            return args.handler(args)
        from bench.registry import use_registry
        from bench.sweep.plugins import load_plugins

        with use_registry(load_plugins(args.plugin)):  # this invocation's alone
            return args.handler(args)
    except ValueError as err:
        print(f"{command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader went away, e.g. `bench list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        hint = ": finished cells are kept; run the same command to resume" \
            if command in ("bench run", "bench paper") else ""
        print(f"{command}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
