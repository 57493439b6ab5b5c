"""Measure the spread of ``time_per_estimate_s`` under a thread policy, on a loaded CPU.

The table in docs/sweeps.md ("Thread policy") comes from this script. Each policy runs in a
fresh interpreter, because OpenMP reads ``OMP_WAIT_POLICY`` when torch is imported::

    taskset -c 0,1 python docs/measure_thread_policy.py --hog 2 --repeats 8

pins everything to two cores, starts two busy-looping processes on them (the other jobs of
a shared machine) and prints, per policy and cell, the median, interquartile range and
coefficient of variation of ``time_per_estimate_s`` over ``--repeats`` runs of the cell.
It also prints the ``cell_s`` of a process's first cell and of the same cell run again,
with and without paying the one-off costs first (``bench.sweep.executors.prepare_process``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

#: (label, torch threads, OMP_WAIT_POLICY); None leaves the variable unset (OpenMP's default)
POLICIES = (
    ("torch default threads, default wait", None, None),
    ("torch default threads, passive wait", None, "PASSIVE"),
    ("1 thread, default wait", 1, None),
    ("1 thread, passive wait (bench's default)", 1, "PASSIVE"),
)
CELLS = (
    ("bernoulli_toy d=200", "bernoulli_toy", {"d": "200"}),
    ("bernoulli_vae", "bernoulli_vae", {}),
)


def _hog() -> None:
    while True:
        pass


def measure(threads: int | None, repeats: int) -> dict:
    """In this process: time every cell ``repeats`` times with ``threads`` torch threads."""
    import torch

    from bench.cell.run import run_cell
    from bench.cell.spec import CellSpec
    from problems import get_problem

    if threads is not None:
        torch.set_num_threads(threads)
    out = {"threads": torch.get_num_threads()}
    for label, problem, options in CELLS:
        declared = get_problem(problem).options
        resolved = tuple(sorted(
            (name, opt.parse(problem, name, options.get(name, opt.default)))
            for name, opt in declared.items()))
        spec = CellSpec(problem, resolved, "reinforce_loo", (), n_samples=10, n_repeats=1000,
                        seed=0, n_bootstrap=0)
        times = [run_cell(spec)[0] for _ in range(repeats)]
        out[label] = [row["time_per_estimate_s"] for row in times]
        out[label + " cell_s"] = [row["cell_s"] for row in times]
    return out


def first_cell(prepare: bool) -> dict:
    """``cell_s`` of the first and the second run of one cell in a fresh process."""
    import torch

    from bench.cell.run import run_cell
    from bench.cell.spec import CellSpec
    from bench.sweep.executors import prepare_process

    torch.set_num_threads(1)
    if prepare:
        prepare_process("cpu")
    spec = CellSpec("bernoulli_toy", (("d", 1), ("t", 0.45), ("theta", 0.0)), "reinforce", (),
                    n_samples=2, n_repeats=100, seed=0, n_bootstrap=0)
    return {"first": run_cell(spec)[0]["cell_s"], "second": run_cell(spec)[0]["cell_s"]}


def _child(args: list[str], policy: str | None) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run([sys.executable, __file__, *args], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(values: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    cv = statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0
    return f"{median * 1e3:8.3f} ms  IQR {(q3 - q1) * 1e3:8.3f} ms  CV {cv:6.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hog", type=int, default=2, help="busy-looping processes")
    parser.add_argument("--repeats", type=int, default=8, help="runs of each cell")
    parser.add_argument("--child", choices=["measure", "first"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "measure":
        print(json.dumps(measure(args.threads or None, args.repeats)))
        return
    if args.child == "first":
        print(json.dumps(first_cell(args.prepare)))
        return
    hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(args.hog)]
    for hog in hogs:
        hog.start()
    time.sleep(1)
    try:
        print(f"{os.cpu_count()} CPUs visible, {len(os.sched_getaffinity(0))} usable; "
              f"{args.hog} busy processes; {args.repeats} runs per cell")
        for label, threads, policy in POLICIES:
            result = _child(["--child", "measure", "--threads", str(threads or 0),
                             "--repeats", str(args.repeats)], policy)
            print(f"{label} ({result['threads']} threads):")
            for cell, _, _ in CELLS:
                print(f"  {cell:22s} {_summary(result[cell])}")
        for prepare in (False, True):
            runs = [_child(["--child", "first"] + (["--prepare"] if prepare else []), "PASSIVE")
                    for _ in range(3)]
            first = statistics.median(r["first"] for r in runs)
            second = statistics.median(r["second"] for r in runs)
            print(f"first cell_s {'after' if prepare else 'without'} prepare_process: "
                  f"{first:.3f} s, the same cell again: {second:.3f} s")
    finally:
        for hog in hogs:
            hog.kill()


if __name__ == "__main__":
    main()
