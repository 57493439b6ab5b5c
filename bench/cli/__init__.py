"""The ``bench`` command line: one module per subcommand.

Each module of ``SUBCOMMANDS`` has ``add_parser(subparsers)``, which registers the
subcommand with its handler. Exit codes: 0 success; 1 the work finished but some of it
failed (cells whose rows say why: an exception, a non-finite estimate, a timeout, a dead
worker; or no figure could be drawn); 2 invalid input (unknown name, bad value, unusable
device, executor or output directory, a run directory that may not be resumed), reported in
one line before any work starts and with nothing written; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

#: the subcommands, in the order ``bench --help`` lists them
SUBCOMMANDS: tuple[str, ...] = (
    "bench.cli.list",
    "bench.cli.run",
    "bench.cli.train",
    "bench.cli.figures",
    "bench.cli.paper",
    "bench.cli.verify",
)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark Monte Carlo gradient estimators."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
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
        return EXIT_INTERRUPTED
