"""Golden numbers: the exact floats that fixed seeds give, to catch changes nobody meant.

Two records, in ``tests/golden/``:

* ``estimates.json``: every original estimator on every toy problem, 32 estimates drawn with
  ``torch.manual_seed(0)`` straight from the estimator contract (no harness involved). A
  change here means an estimator or a problem draws or computes differently.
* ``sweep.json``: the statistics columns of a small ``bench.run_sweep`` of the same pairs. A
  change here (and not in ``estimates.json``) means the harness changed the numbers: seeds,
  chunking, statistics.

Regenerate with ``python -m tests.golden`` only when a change of numbers is intended, and say
so in the commit message. The floats are stored exactly (``float.hex``) with the machine
that wrote them (``machine``): torch's vector instruction set, the CPU's model and torch's
version. Elsewhere float32 kernels may round differently (the same AVX-512 label on an AMD
and an Intel CPU gave statistics ~1e-10 apart), so the test then allows 1e-5 relative
instead of exact equality.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from bench.env import cpu_name
from problems import get_problem

FOLDER = Path(__file__).parent / "golden"
#: the estimators and toy problems of the first landing, whose numbers must not move
ESTIMATORS = ("reinforce", "reinforce_ema", "reinforce_loo", "reparam", "gumbel_softmax",
              "st_gumbel_softmax", "straight_through")
PROBLEMS = {
    "gaussian_quadratic": {"d": 2, "mu": 0.5},
    "bernoulli_toy": {"d": 3, "theta": 0.7},
    "categorical_toy": {"d": 2, "classes": 3, "theta": 1.0},
    "gaussian_elbo": {"d": 2},
}
N_SAMPLES, N_REPEATS = 3, 32


def draw(problem_name: str, estimator_name: str) -> list[float] | None:
    """Flattened estimates ``[R * D]`` of one pair from seed 0, or None if it does not apply."""
    from estimators import get_estimator
    from estimators.base import flatten, leaf_grads
    from problems.base import repeat_params

    problem = get_problem(problem_name)(PROBLEMS[problem_name], dtype=torch.float64)
    estimator_cls = get_estimator(estimator_name)
    if estimator_cls.incompatibility(problem) is not None:
        return None
    estimator = estimator_cls()
    torch.manual_seed(0)
    point = problem.init_params()
    state, _ = estimator.warm_up(problem, point, N_SAMPLES)
    state = {k: v.expand(N_REPEATS, *v.shape[1:]).clone() for k, v in state.items()}
    params = repeat_params(point, N_REPEATS)
    loss = estimator.surrogate(problem, params, N_SAMPLES, state).loss
    return flatten(leaf_grads(loss.sum(), params)).reshape(-1).tolist()


def estimates() -> dict[str, list[float]]:
    out = {}
    for problem in PROBLEMS:
        for estimator in ESTIMATORS:
            values = draw(problem, estimator)
            if values is not None:
                out[f"{problem}/{estimator}"] = values
    return out


SWEEP_COLUMNS = ("bias_l2", "bias_l2_ci_low", "bias_l2_ci_high", "bias_p_value",
                 "variance_trace", "variance_trace_ci_low", "variance_trace_ci_high", "mse",
                 "cosine", "snr", "bias", "bias_ci_low", "bias_ci_high", "mse_ci_low",
                 "mse_ci_high")


def sweep() -> dict[str, list[float]]:
    """The statistics of a small sweep, by ``problem/estimator/K``."""
    import bench

    with tempfile.TemporaryDirectory() as out:
        cells = bench.run_sweep(list(ESTIMATORS), list(PROBLEMS), samples=[2], repeats=64,
                                settings={"d": [2]}, bootstrap=50, out=out, progress=False,
                                threads=1)
    ok = cells[cells["status"] == "ok"]
    return {
        f"{row.problem}/{row.estimator}/{row.n_samples}": [
            float(getattr(row, c)) for c in SWEEP_COLUMNS
        ]
        for row in ok.itertuples()
    }


def machine() -> dict[str, str]:
    """What decides the last bits of float32 kernels: instruction set, CPU model, torch."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_model": cpu_name(), "torch": torch.__version__}


def save(name: str, values: dict[str, list[float]]) -> None:
    record = {
        **machine(),
        "values": {k: [float(v).hex() for v in vs] for k, vs in values.items()},
    }
    FOLDER.mkdir(exist_ok=True)
    (FOLDER / name).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def load(name: str) -> tuple[dict[str, list[float]], bool]:
    """The stored values, and whether this machine must reproduce them bit for bit."""
    record = json.loads((FOLDER / name).read_text())
    exact = all(record.get(key) == value for key, value in machine().items())
    return {k: [float.fromhex(v) for v in vs] for k, vs in record["values"].items()}, exact


if __name__ == "__main__":
    save("estimates.json", estimates())
    save("sweep.json", sweep())
    print(f"wrote {FOLDER}/estimates.json and sweep.json")
