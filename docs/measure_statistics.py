"""Measure the cost of a cell's statistics against the estimation, and a cell's peak memory.

The tables in docs/sweeps.md ("Statistics: cost and memory") come from this script::

    python docs/measure_statistics.py --repeats 7          # throughput, 1 thread
    python docs/measure_statistics.py --memory             # peak memory, fresh processes

Throughput: bernoulli_toy d = 200, reinforce_loo, K = 2, R = 20000 (the configuration of
issue 14), run ``--repeats`` times with ``--bootstrap`` 1000 and 0. Each run reports the
harness's estimation time (``measure_s``), its statistics time (``stats_s``) and the time of
a *hand-fused* computation of the same R estimates: the same random draws (so the same
numbers, checked on one chunk) with the score written out by hand, no autograd and no
statistics. The ratios are estimates per second, harness (estimation + statistics) over
fused, each run's against the fused computation timed just before it; their median and
IQR. Run against an older checkout without ``stats_s``, ``measure_s`` includes the
statistics.

Memory: each cell runs in a fresh process; the peak resident set size of the process
(``ru_maxrss``) above the size after imports and problem construction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

R, D, K = 20_000, 200, 2
MEMORY_CELLS = (
    ("gaussian_quadratic d=1, K=1, R=10^6", "gaussian_quadratic", {"d": 1}, 1, 10**6),
    ("bernoulli_toy d=10^4, K=1, R=1000", "bernoulli_toy", {"d": 10**4}, 1, 1000),
    (
        "gaussian_quadratic d=5x10^4 (D=10^5), K=1, R=1000",
        "gaussian_quadratic",
        {"d": 5 * 10**4},
        1,
        1000,
    ),
)


def spec(problem: str, options: dict, estimator: str, k: int, r: int, bootstrap: int):
    from bench.cell.spec import CellSpec
    from problems import get_problem

    declared = get_problem(problem).options
    resolved = tuple(
        sorted(
            (name, opt.parse(problem, name, options.get(name, opt.default)))
            for name, opt in declared.items()
        )
    )
    return CellSpec(
        problem, resolved, estimator, (), n_samples=k, n_repeats=r, seed=0, n_bootstrap=bootstrap
    )


def fused(seed: int, r: int = R):
    """The R estimates of reinforce_loo on bernoulli_toy, written out: b ~ Bernoulli(p),
    f_k = mean_j (b_kj - t)^2, g = mean_k (f_k - mean_{l != k} f_l) (b_k - p)."""
    import torch

    torch.manual_seed(seed)
    p = torch.sigmoid(torch.zeros(D))
    bits = torch.bernoulli(p.expand(K, r, D))
    cost = ((bits - 0.45) ** 2).mean(-1)  # [K, R]
    baseline = (cost.sum(0, keepdim=True) - cost) / (K - 1)
    return ((cost - baseline).unsqueeze(-1) * (bits - p)).mean(0)  # [r, D]


def throughput(repeats: int) -> dict:
    import torch

    from bench.cell.estimate import estimate_chunks, prepare
    from bench.cell.run import run_cell
    from estimators import get_estimator
    from problems import get_problem

    torch.set_num_threads(1)
    problem = get_problem("bernoulli_toy")({"d": D})
    point = problem.init_params()
    estimator = get_estimator("reinforce_loo")()
    state, _ = prepare(problem, estimator, point, K)
    torch.manual_seed(1)  # 2000 estimates are one chunk, so one draw of random numbers
    harness = torch.cat(list(estimate_chunks(problem, estimator, point, K, 2000, state)))
    if not torch.equal(harness, fused(1, 2000)):
        raise AssertionError("the fused computation does not reproduce the harness's estimates")
    out: dict[str, list[float]] = {"fused": []}
    for bootstrap in (1000, 0):
        out[f"measure_{bootstrap}"], out[f"stats_{bootstrap}"] = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fused(0)
        out["fused"].append(time.perf_counter() - start)
        for bootstrap in (1000, 0):
            row, _ = run_cell(spec("bernoulli_toy", {"d": D}, "reinforce_loo", K, R, bootstrap))
            out[f"measure_{bootstrap}"].append(row["measure_s"])
            out[f"stats_{bootstrap}"].append(row.get("stats_s") or 0.0)
    return out


def memory(index: int) -> dict:
    import resource

    import torch

    from bench.cell.run import run_cell
    from problems import get_problem

    torch.set_num_threads(1)
    label, problem, options, k, r = MEMORY_CELLS[index]
    get_problem(problem)(options).init_params()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row, _ = run_cell(spec(problem, options, "reinforce", k, r, 1000))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "label": label,
        "peak_mib": (peak - base) / 1024,
        "status": row["status"],
        "n_bootstrap": row.get("n_bootstrap"),
        "cell_s": row["cell_s"],
    }


def _child(args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _quartiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3


def _spread(values: list[float]) -> str:
    q1, median, q3 = _quartiles(values)
    return f"{median:.3f} s (IQR {q3 - q1:.3f})"


def _ratio(values: list[float]) -> str:
    q1, median, q3 = _quartiles(values)
    return f"{median:.2f} (IQR {q1:.2f} to {q3:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of each measurement")
    parser.add_argument("--memory", action="store_true", help="measure peak memory instead")
    parser.add_argument("--child", choices=["throughput", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "throughput":
        print(json.dumps(throughput(args.repeats)))
        return
    if args.child == "memory":
        print(json.dumps(memory(args.index)))
        return
    if args.memory:
        for index in range(len(MEMORY_CELLS)):
            result = _child(["--child", "memory", "--index", str(index)])
            print(
                f"{result['label']}: peak {result['peak_mib']:.0f} MiB above the start, "
                f"{result['status']}, n_bootstrap {result['n_bootstrap']}, "
                f"cell_s {result['cell_s']:.1f}"
            )
        return
    out = _child(["--child", "throughput", "--repeats", str(args.repeats)])
    print(
        f"bernoulli_toy d={D} reinforce_loo K={K} R={R}, 1 thread, {args.repeats} runs "
        f"(median, IQR)"
    )
    print(f"  hand-fused estimates: {_spread(out['fused'])}")
    for bootstrap in (1000, 0):
        measure, stats = out[f"measure_{bootstrap}"], out[f"stats_{bootstrap}"]
        # each run's ratio against the fused computation timed just before it, so that the
        # load of a shared machine, which drifts between runs, cancels in the ratio
        ratios = [f / (m + s) for f, m, s in zip(out["fused"], measure, stats, strict=True)]
        alone = [f / m for f, m in zip(out["fused"], measure, strict=True)]
        print(
            f"  --bootstrap {bootstrap}: estimation {_spread(measure)}, statistics "
            f"{_spread(stats)}; harness / fused throughput {_ratio(ratios)} "
            f"(estimation alone {_ratio(alone)})"
        )


if __name__ == "__main__":
    main()
