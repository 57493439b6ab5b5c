"""The GPU check in one command: CUDA tests, CPU and CUDA side by side, asv on CUDA, one report.

``benchmarks/gpu_check.sh`` (or ``python -m benchmarks.gpu_check``) on a machine with CUDA:

1. runs the tests marked ``cuda`` (``pytest -m cuda``);
2. runs the fixed sweep ``CELLS`` twice, ``--device cpu`` and ``--device cuda`` (local
   executor, one CPU thread), and puts the time per estimate, estimates per second and
   peak memory of each cell side by side;
3. checks that the two devices' statistics agree within their uncertainty: the runs draw
   different random numbers (CUDA's generator is not the CPU's), so they are two independent
   samples of the same estimator, and for every coordinate the difference of the means,
   divided by ``sqrt(var_cpu / R + var_cuda / R)``, must stay under the Bonferroni-corrected
   normal quantile ``Z_CHECK`` over all coordinates of all cells (a family-wise false alarm
   rate of ``ALPHA``), and the 95 % bootstrap intervals of every cell's variance trace must
   overlap;
4. runs the asv suites once each with ``GRADBENCH_ASV_DEVICE=cuda`` (smoke mode, nothing
   saved: ``benchmarks/ci.sh``'s command);
5. writes all of it to one Markdown report (``--report``, default
   ``results/gpu_check.md``).

It exits 1 when any part fails, and stops after ``BUDGET_S`` (8 minutes) whatever happens.
Without CUDA it prints one line saying so and exits 0. A GPU's timings are those of one
CUDA stream with ``torch.cuda.synchronize`` before each clock read
(``bench.cell.timing``); its memory is ``torch.cuda.max_memory_allocated`` during one
estimate above what was allocated before it.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[1]
#: wall-clock budget of the whole check, in seconds
BUDGET_S = 480.0
#: family-wise false-alarm rate of the agreement check
ALPHA = 1e-3


@dataclass(frozen=True)
class Cells:
    """One ``bench run`` of the fixed sweep."""

    problem: str
    estimators: str
    samples: str
    repeats: int
    settings: tuple[str, ...] = ()


#: the fixed set of cells: toys at R = 1e5 and 1e6, both VAEs, the continuous GAN critic
CELLS = (
    Cells("bernoulli_toy", "reinforce_loo,disarm", "2,10", 1_000_000),
    Cells("bernoulli_toy", "reinforce_loo", "10", 100_000, ("d=200",)),
    Cells("gaussian_quadratic", "reparam,reinforce_loo", "10", 1_000_000, ("d=10",)),
    Cells("categorical_toy", "gumbel_softmax,reinforce_loo", "10", 100_000),
    Cells("bernoulli_vae", "reinforce_loo,disarm,straight_through", "10", 2000),
    Cells("categorical_vae", "reinforce_loo,gumbel_softmax", "10", 2000),
    Cells("gan_continuous", "reparam,reinforce_loo", "10", 2000),
)


def remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 5:
        raise TimeoutError(f"the GPU check ran out of its {BUDGET_S:g} s budget")
    return left


def command(args: list[str], deadline: float, env: dict[str, str] | None = None,
            ) -> tuple[int, str]:
    """Run ``args`` in the repository root; its exit code and output (124 on overrun)."""
    try:
        done = subprocess.run(args, cwd=ROOT, env=env or os.environ.copy(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=remaining(deadline))
    except subprocess.TimeoutExpired as err:
        out = err.stdout if isinstance(err.stdout, str) else (err.stdout or b"").decode()
        return 124, out + "\n(stopped: out of time)"
    return done.returncode, done.stdout


def run_cells(device: str, work: Path, deadline: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fixed sweep on ``device``: its cells and coordinate tables."""
    cells, coords = [], []
    for i, group in enumerate(CELLS):
        out = work / f"{device}-{i}"
        args = [sys.executable, "-m", "bench", "run", "--problem", group.problem,
                "--estimator", group.estimators, "--samples", group.samples,
                "--repeats", str(group.repeats), "--device", device, "--threads", "1",
                "--bootstrap", "200", "--no-progress", "--out", str(out)]
        for setting in group.settings:
            args += ["--set", setting]
        code, text = command(args, deadline)
        if not (out / "cells.parquet").exists():
            raise RuntimeError(f"bench run on {device} wrote nothing (exit {code}):\n"
                               f"{text[-1500:]}")
        cells.append(pd.read_parquet(out / "cells.parquet"))
        coords.append(pd.read_parquet(out / "coords.parquet"))
    return pd.concat(cells, ignore_index=True), pd.concat(coords, ignore_index=True)


def side_by_side(cpu: pd.DataFrame, cuda: pd.DataFrame) -> pd.DataFrame:
    """Time, throughput and memory of each cell on both devices, with the speed-up."""
    on = ["problem", "problem_options", "estimator", "estimator_options", "n_samples",
          "n_repeats"]
    keep = [*on, "status", "time_per_estimate_s", "estimates_per_s", "peak_memory_bytes"]
    both = cpu[keep].merge(cuda[keep], on=on, suffixes=("_cpu", "_cuda"), how="outer")
    both["speedup"] = both["time_per_estimate_s_cpu"] / both["time_per_estimate_s_cuda"]
    return both


def agreement(cpu: tuple[pd.DataFrame, pd.DataFrame],
              cuda: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, float]:
    """Per cell: the largest standardized difference of the coordinate means between the
    devices, and whether the variance traces' 95 % intervals overlap. Also returns the
    threshold ``z`` (Bonferroni over every coordinate compared)."""
    cell_on = ["problem", "problem_options", "estimator", "estimator_options", "n_samples"]
    coord_on = [*cell_on, "param", "index"]
    a, b = cpu[1], cuda[1]
    pairs = a.merge(b, on=[*coord_on, "n_repeats"], suffixes=("_cpu", "_cuda"))
    se = ((pairs["variance_cpu"] + pairs["variance_cuda"]) / pairs["n_repeats"]) ** 0.5
    pairs["z"] = (pairs["mean_cpu"] - pairs["mean_cuda"]).abs() / se
    z_check = float(norm.isf(ALPHA / (2 * max(1, len(pairs)))))
    worst = pairs.groupby(cell_on, as_index=False)["z"].max().rename(columns={"z": "max_z"})
    traces = ["variance_trace", "variance_trace_ci_low", "variance_trace_ci_high"]
    t = cpu[0][[*cell_on, *traces]].merge(cuda[0][[*cell_on, *traces]], on=cell_on,
                                          suffixes=("_cpu", "_cuda"))
    low_cpu, high_cpu = t["variance_trace_ci_low_cpu"], t["variance_trace_ci_high_cpu"]
    low_cuda, high_cuda = t["variance_trace_ci_low_cuda"], t["variance_trace_ci_high_cuda"]
    t["intervals_overlap"] = (low_cpu <= high_cuda) & (low_cuda <= high_cpu)
    table = worst.merge(t[[*cell_on, "variance_trace_cpu", "variance_trace_cuda",
                           "intervals_overlap"]], on=cell_on, how="outer")
    table["agrees"] = (table["max_z"] <= z_check) & table["intervals_overlap"].astype(bool)
    return table, z_check


def markdown(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table, numbers with 4 significant digits."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return str(v)
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n"
                          for row in frame.itertuples(index=False))


def device_line() -> str:
    import torch

    props = torch.cuda.get_device_properties(0)
    return (f"{torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB, "
            f"CUDA {torch.version.cuda}, torch {torch.__version__}, "
            f"{torch.cuda.device_count()} device(s)")


def check(report: Path, work: Path) -> bool:
    """Run the whole check and write ``report``; True when every part passed."""
    deadline = time.monotonic() + BUDGET_S
    started = time.monotonic()
    parts: list[str] = [f"# GPU check\n\nDevice: {device_line()}\n"]
    ok = True
    code, text = command([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p",
                          "no:cacheprovider"], deadline)
    ok &= code == 0
    tail = "\n".join(text.strip().splitlines()[-15:])
    parts.append(f"## CUDA tests (`pytest -m cuda`): exit {code}\n\n```\n{tail}\n```\n")
    try:
        cpu = run_cells("cpu", work, deadline)
        cuda = run_cells("cuda", work, deadline)
        both = side_by_side(cpu[0], cuda[0])
        ok &= bool((both["status_cpu"] == "ok").all() and (both["status_cuda"] == "ok").all())
        parts.append("## CPU and CUDA side by side (one CPU thread; time per estimate, "
                     "median)\n\n" + markdown(both) + "\n")
        table, z_check = agreement(cpu, cuda)
        ok &= bool(table["agrees"].all())
        parts.append(f"## Statistics agree (max |z| of the coordinate means <= {z_check:.2f}, "
                     f"variance-trace 95 % intervals overlap)\n\n" + markdown(table) + "\n")
    except (RuntimeError, TimeoutError, KeyError, ValueError) as err:
        ok = False
        parts.append(f"## Cells: FAILED\n\n```\n{type(err).__name__}: {err}\n```\n")
    env = os.environ | {"GRADBENCH_ASV_DEVICE": "cuda",
                        "ASV_PYTHONPATH": os.pathsep.join(filter(None, [
                            str(ROOT), os.environ.get("PYTHONPATH")]))}
    code, text = command(["bash", "benchmarks/ci.sh", sys.executable], deadline, env)
    ok &= code == 0
    tail = "\n".join(text.strip().splitlines()[-20:])
    parts.append(f"## asv suites on CUDA (`GRADBENCH_ASV_DEVICE=cuda benchmarks/ci.sh`): "
                 f"exit {code}\n\n```\n{tail}\n```\n")
    verdict = "PASSED" if ok else "FAILED"
    parts.insert(1, f"**{verdict}** in {time.monotonic() - started:.0f} s "
                    f"(budget {BUDGET_S:.0f} s).\n")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(parts))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=ROOT / "results" / "gpu_check.md")
    parser.add_argument("--work", type=Path, default=ROOT / "results" / "gpu_check",
                        help="where the CPU and CUDA sweeps' run directories go (a new "
                        "time-stamped folder each time)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); "
              "nothing to check")
        return 0
    work = args.work / time.strftime("%Y%m%d-%H%M%S")  # fresh: never a resumed sweep
    ok = check(args.report, work)
    print(f"gpu_check: {'passed' if ok else 'FAILED'}; report in {args.report}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
