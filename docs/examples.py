"""Regenerate, or check, the example outputs printed in README.md and docs/*.md.

Each example is a fenced block preceded by a marker line ``<!-- example: NAME -->``; this
script runs the example's code and writes what it prints into the block:

    python docs/examples.py                    # regenerate every example (minutes)
    python docs/examples.py quickstart python  # only these
    python docs/examples.py --check            # compare instead of writing; exit 1 if stale

``--check --fast`` (what ``tests/test_examples.py`` runs in CI) runs a small version of the
slow examples: a subset of their cells, whose rows must match the rows of the full block
(every cell has its own seed, so a cell prints the same numbers alone as in the full
sweep). Timing columns (``ms/est``) are not compared, and numbers are compared to the
printed precision (relative 1e-3), so that another CPU's last-bit float32 differences do
not count. Run with one thread (``OMP_NUM_THREADS=1``), as the examples were.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import resource
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- example: {} -->"
#: truths as the summary shows them, the column after which a summary row's numbers start
TRUTHS = {"exact", "ref", "none"}
#: the summary's best marks, not compared in a subset of its rows
BEST_MARKS = {"*", "="}
#: relative difference below which two printed numbers count as equal
TOLERANCE = 1e-3


@dataclass(frozen=True)
class Example:
    """An example output: where it is printed and how to make it (fully and quickly)."""

    name: str
    page: str
    make: Callable[[bool], str]  # fast -> the block's text
    #: the last word of each line is not compared (a timing column)
    ignore_last: bool = False
    #: its fast version prints a subset of the rows (else the same lines as the full one)
    subset: bool = False


#: CPU seconds (user + system) of each full sweep run here, by command, for ``costs``
SWEEP_CPU_S: dict[str, float] = {}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sweep_summary(command: str, **kw) -> str:
    """``$ command`` and what ``bench run`` prints for it (without the ``wrote`` line)."""
    import torch

    import bench
    from bench.report.summary import summary_table

    torch.set_num_threads(1)
    started = _cpu_s()
    with tempfile.TemporaryDirectory() as out:
        cells = bench.run_sweep(out=out, progress=False, threads=1, **kw)
    SWEEP_CPU_S[command] = _cpu_s() - started
    return f"$ {command}\n{summary_table(cells)}\n"


def quickstart(fast: bool) -> str:
    """``bench run --estimator all``; fast: six of its cells."""
    subset = {
        "estimators": "reinforce_ema,reinforce_loo,gumbel_softmax,straight_through",
        "problems": "gaussian_quadratic,bernoulli_toy",
    }
    text = sweep_summary("bench run --estimator all", **(subset if fast else {}))
    return text.split("\n", 1)[1]  # the README shows the command above the block


def gan_discrete(fast: bool) -> str:
    """A sweep of every estimator on ``gan_discrete``; fast: two of its cells."""
    command = "bench run --problem gan_discrete --estimator all --samples 8 --repeats 1000"
    estimators = "reinforce_loo,straight_through" if fast else "all"
    return sweep_summary(
        command, estimators=estimators, problems="gan_discrete", samples=[8], repeats=1000
    )


def costs(fast: bool) -> str:
    """What ``bench run --estimator all`` covers, counted from the registries, and (full
    mode) its CPU time at one thread, from the quick start's sweep when this run made it.

    The cell counts come from the same expansion and skip rules as a run, so they cannot go
    stale; only the CPU time (the last word, not compared by ``--check``) is a measurement.
    """
    from collections import Counter

    from bench.sweep.spec import SweepSpec, expand
    from estimators import ESTIMATORS, get_estimator
    from problems import PROBLEMS, get_problem

    def fate(cell) -> str:
        estimator = get_estimator(cell.estimator)
        if estimator.incompatibility(get_problem(cell.problem), dict(cell.problem_options)):
            return "does not apply"
        return "K out of range" if estimator.sample_rule(cell.n_samples) else "runs"

    sweep = SweepSpec()
    cells = expand(sweep)
    reasons = Counter(fate(c) for c in cells)
    command = "bench run --estimator all"
    if fast:
        cpu = "-"
    else:
        if command not in SWEEP_CPU_S:
            quickstart(False)
        cpu = f"{SWEEP_CPU_S[command]:.0f}"
    return (
        f"registered: {len(ESTIMATORS)} estimators, {len(PROBLEMS)} problems\n"
        f"{command}: {len(cells)} cells at K = {sweep.samples[0]}, R = {sweep.repeats}; "
        f"{reasons['runs']} measured, "
        f"{reasons['does not apply']} do not apply, {reasons['K out of range']} outside "
        f"the estimator's K range\n"
        f"CPU seconds of the measured cells (one thread, user + system): {cpu}\n"
    )


def python_example(fast: bool) -> str:
    """The README's Python example (its code is the block above the output)."""
    code = python_code()
    buffer = io.StringIO()
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.chdir(tmp),
        contextlib.redirect_stdout(buffer),
    ):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    return buffer.getvalue()


def python_code() -> str:
    """The ```python block of README.md just above the ``python`` example's output."""
    text = (ROOT / "README.md").read_text()
    before = text[: text.index(MARKER.format("python"))]
    return re.findall(r"```python\n(.*?)```", before, flags=re.DOTALL)[-1]


def group_bias(fast: bool) -> str:
    """The exact-bias tables of docs/group_baselines.md (exact: fast and full are the same)."""
    import runpy

    script = runpy.run_path(str(ROOT / "docs" / "group_bias_table.py"))
    return script["table"]() + "\n" + script["scale_table"]()


EXAMPLES = {
    e.name: e
    for e in (
        Example("quickstart", "README.md", quickstart, ignore_last=True, subset=True),
        Example("python", "README.md", python_example),
        Example("gan_discrete", "docs/gan_critic.md", gan_discrete, ignore_last=True, subset=True),
        Example("group_bias", "docs/group_baselines.md", group_bias),
        Example("costs", "docs/sweeps.md", costs, ignore_last=True),
    )
}


def block_span(text: str, name: str) -> tuple[int, int]:
    """Start and end offsets of the content of the fenced block after ``name``'s marker."""
    marker = MARKER.format(name)
    if marker not in text:
        raise KeyError(f"no {marker} in the page")
    fence = text.index("```", text.index(marker))
    start = text.index("\n", fence) + 1
    return start, text.index("```", start)


def read_block(example: Example) -> str:
    text = (ROOT / example.page).read_text()
    start, end = block_span(text, example.name)
    return text[start:end]


def write_block(example: Example, content: str) -> None:
    path = ROOT / example.page
    text = path.read_text()
    start, end = block_span(text, example.name)
    path.write_text(text[:start] + content + text[end:])


def _rows(block: str, ignore_last: bool) -> dict[tuple[str, ...], list[str]]:
    """Summary rows by key (the problem line above them, then the words up to the truth
    column; or the whole line)."""
    rows, problem = {}, ()
    for line in block.splitlines():
        words = line.split()
        cut = next((i + 1 for i, w in enumerate(words) if w in TRUTHS), None)
        if cut is None or not any(_number(w) is not None for w in words[cut:]):
            rows[tuple(words)] = []
            if not line.startswith(" "):  # a block's problem line (rows are indented)
                problem = tuple(words)
            continue
        values = words[cut:-1] if ignore_last else words[cut:]
        # the best marks depend on the other cells of the block, which a subset lacks
        rows[problem + tuple(words[:cut])] = [v for v in values if v not in BEST_MARKS]
    return rows


def _number(word: str) -> float | None:
    try:
        return float(word)
    except ValueError:
        return None


def _same(a: str, b: str) -> bool:
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return a == b
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= TOLERANCE * max(abs(x), abs(y)) or x == y


def differences(example: Example, got: str, fast: bool) -> list[str]:
    """What in ``got`` differs from the page's block (empty: it matches): line by line, or,
    fast, only the summary rows ``got`` has (a subset of the page's)."""
    where = f"{example.page} [{example.name}]"
    if fast and example.subset:
        return _subset_differences(where, read_block(example), got, example.ignore_last)
    shown, made = read_block(example).splitlines(), got.splitlines()
    problems = []
    for i in range(max(len(shown), len(made))):
        a = made[i].split() if i < len(made) else []
        b = shown[i].split() if i < len(shown) else []
        if example.ignore_last:
            a, b = a[:-1], b[:-1]
        if len(a) != len(b) or not all(_same(x, y) for x, y in zip(a, b, strict=False)):
            problems.append(
                f"{where}: line {i + 1} prints {' '.join(a) or '(nothing)'}; "
                f"the page shows {' '.join(b) or '(nothing)'}"
            )
    return problems


def _subset_differences(where: str, block: str, got: str, ignore_last: bool) -> list[str]:
    shown, made = _rows(block, ignore_last), _rows(got, ignore_last)
    problems = []
    for key, values in made.items():
        if key not in shown:
            if values:  # a summary row the page lacks; other lines (counts) may differ
                problems.append(f"{where}: missing row {' '.join(key)}")
            continue
        if len(values) != len(shown[key]) or not all(
            _same(a, b) for a, b in zip(values, shown[key], strict=False)
        ):
            problems.append(
                f"{where}: {' '.join(key)}: prints {' '.join(values)}, the page "
                f"shows {' '.join(shown[key])}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"examples (default all): {', '.join(EXAMPLES)}")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--fast", action="store_true", help="with --check: small versions")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in EXAMPLES]
    if unknown:
        parser.error(f"unknown example {', '.join(unknown)}; valid: {', '.join(EXAMPLES)}")
    stale = []
    for name in args.names or EXAMPLES:
        example = EXAMPLES[name]
        got = example.make(args.fast and args.check)
        if args.check:
            stale += differences(example, got, args.fast)
        else:
            write_block(example, got)
            print(f"wrote {example.page} [{name}]")
    for line in stale:
        print(line, file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
