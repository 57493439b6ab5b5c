"""Peak resident memory of single cells, each ``bench run`` in a fresh process.

Prints the Markdown table of docs/sweeps.md ("Memory"): for each cell the peak RSS
(``/usr/bin/time -f %M``, kilobytes, so the whole process: interpreter, imports, problem,
chunks and statistics) against the same cell at R = 4, its base (one chunk of four
repeats), and the chunk budget (``--memory``, default 256 MiB). Run it from a checkout:
``PYTHONPATH=$PWD python docs/measure_memory.py [--code DIR] [--runs N]``; ``--code``
measures another checkout's code (e.g. the code before a change).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

#: (problem, estimator, K, settings, R values)
CELLS = [
    ("bernoulli_toy", "reinforce_loo", 2, ["d=200"], [10_000, 300_000, 1_000_000]),
    ("categorical_vae", "arsm", 10, [], [2_000]),
    ("categorical_vae", "indecater", 10, [], [2_000]),
]


def peak_rss_mib(code: str, problem: str, estimator: str, k: int, settings: list[str],
                 repeats: int, memory: str | None) -> float:
    """Peak RSS in MiB of one ``bench run`` of the cell in a fresh process."""
    with tempfile.TemporaryDirectory() as out:
        command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "bench", "run",
                   "--estimator", estimator, "--problem", problem, "--samples", str(k),
                   "--repeats", str(repeats), "--threads", "1", "--bootstrap", "0",
                   "--no-progress", "--out", out]
        for setting in settings:
            command += ["--set", setting]
        if memory is not None:
            command += ["--memory", memory]
        env = dict(os.environ, PYTHONPATH=code, OMP_NUM_THREADS="1")
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=os.getcwd(), help="checkout whose code runs")
    parser.add_argument("--runs", type=int, default=1, help="runs per cell (median)")
    parser.add_argument("--memory", default=None, help="--memory of every run (default: none)")
    args = parser.parse_args()
    print("| cell | R | peak RSS (MiB) | base at R = 4 (MiB) | above base (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for problem, estimator, k, settings, repeats in CELLS:
        cell = (problem, estimator, k, settings)
        base = median_rss(args.code, cell, 4, args.memory, args.runs)
        label = f"{problem} {' '.join(settings)} {estimator} K={k}".replace("  ", " ")
        for r in repeats:
            peak = median_rss(args.code, cell, r, args.memory, args.runs)
            print(f"| {label} | {r:.0e} | {peak:.0f} | {base:.0f} | {peak - base:.0f} |",
                  flush=True)


def median_rss(code: str, cell: tuple, repeats: int, memory: str | None, runs: int) -> float:
    """The median over ``runs`` fresh processes of ``peak_rss_mib``."""
    return statistics.median(peak_rss_mib(code, *cell, repeats, memory) for _ in range(runs))


if __name__ == "__main__":
    main()
