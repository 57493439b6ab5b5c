"""The CUDA code paths: placement, synchronised clocks, CUDA memory, the process pool on a
GPU. Marked ``cuda``: skipped without a CUDA device (tests/conftest.py); run them with
``pytest -m cuda`` or ``benchmarks/gpu_check.sh``."""

import numpy as np
import pytest
import torch

from bench.cell.run import run_cell
from bench.cell.timing import peak_memory_bytes, time_call
from bench.sweep.run import run_sweep
from bench.sweep.spec import SweepSpec, expand

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")


def cell(problem: str, estimator: str, repeats: int = 400):
    sweep = SweepSpec(estimators=(estimator,), problems=(problem,), samples=(4,),
                      repeats=repeats, n_bootstrap=100, device="cuda")
    return run_cell(expand(sweep)[0])


@pytest.mark.parametrize(("problem", "estimator"), [
    ("bernoulli_toy", "disarm"), ("categorical_toy", "reinforce_loo"),
    ("gaussian_quadratic", "reparam"), ("bernoulli_vae", "reinforce_loo"),
    ("categorical_vae", "reinforce_loo"), ("gan_continuous", "reparam"),
])
def test_a_cell_runs_on_the_gpu_and_agrees_with_its_truth(problem, estimator):
    row, coords = cell(problem, estimator)
    assert row["status"] == "ok", row["reason"]
    assert row["device"] == "cuda"
    assert row["n_finite"] == row["n_repeats"]
    assert row["bias_p_value"] > 1e-4  # unbiased estimators: no detectable bias
    assert row["peak_memory_bytes"] > 0 and row["time_per_estimate_s"] > 0
    assert len(coords) == row["grad_dim"]


def test_peak_memory_counts_a_known_allocation_on_the_gpu():
    n = 2**20  # float32: 4 MiB

    def step() -> None:
        x = torch.ones(n, device=CUDA)
        (x * 2).sum()

    assert peak_memory_bytes(step, CUDA) >= 2 * 4 * n  # x and x * 2 live at once


def test_the_clock_waits_for_the_gpu():
    cycles = 50_000_000  # tens of milliseconds on any GPU; the launch alone is microseconds
    timing = time_call(lambda: torch.cuda._sleep(cycles), CUDA, warmup=1, min_reps=3,
                       max_reps=3)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    torch.cuda.synchronize()
    assert timing.median_s >= 0.5 * start.elapsed_time(end) / 1000


def test_process_pool_on_the_gpu_gives_the_local_numbers(tmp_path):
    kw = dict(estimators="reinforce_loo", problems="bernoulli_toy", samples=[4], repeats=300,
              bootstrap=50, progress=False, device="cuda")
    local = run_sweep(out=tmp_path / "local", **kw)
    pooled = run_sweep(out=tmp_path / "pool", executor="process", workers=1, **kw)
    measured = ["variance_trace", "bias_l2", "mse"]
    assert (local["status"] == "ok").all() and (pooled["status"] == "ok").all()
    # the same kernels in another process; atomics (index_add backward) may reorder sums
    assert np.allclose(local[measured], pooled[measured], rtol=1e-5, atol=0)
