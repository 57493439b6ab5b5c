"""Coverage of a cell's intervals on closed-form cells (docs/intervals.md).

Each cell below has an exact variance trace, mse and bias norm (closed form or enumeration);
``measure`` draws ``cells`` independent cells of R estimates and counts how often each
95% interval covers the exact value, and how often the bias test rejects at 5%.
``python -m tests.coverage`` prints the table of docs/intervals.md (minutes);
``tests/test_intervals.py`` checks it in the slow suite.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from bench.cell.metrics import Accumulator
from bench.cell.seeds import derive_seed
from estimators import get_estimator
from problems import get_problem
from tests.stats import draw_estimates, flat_truth

#: the bernoulli_toy of the cells: d = 3 bits at theta = 1, t = 0.45 (the default)
BERNOULLI = {"d": 3, "theta": 1.0}


@dataclass(frozen=True)
class Exact:
    """A cell's exact variance trace, mse and bias norm (None: not closed form)."""

    trace: float | None
    mse: float | None
    bias: float


def gaussian_quadratic_exact(estimator: str, k: int) -> Exact:
    """mu = 1, sigma = 1, k = 0, d = 1, x = 1 + e, e ~ N(0, 1) (E e^2, e^4, e^6, e^8 = 1, 3,
    15, 105). reparam's sample is 2 (1 + e) (1, e): variances 4 and 4 Var(e + e^2) = 12.
    reinforce's is (1 + e)^2 (e, e^2 - 1): E (1 + e)^4 e^2 = 34 and
    E (1 + e)^4 (e^2 - 1)^2 = 140, both of mean 2, variances 30 and 136. Both unbiased;
    the trace of a mean of K samples is the per-sample one / K. reinforce_loo: no closed
    form for the trace (its bias test only)."""
    per_sample = {"reparam": 16.0, "reinforce": 166.0}.get(estimator)
    trace = None if per_sample is None else per_sample / k
    return Exact(trace, trace, 0.0)


def bernoulli_exact(estimator: str, k: int) -> Exact:
    """bernoulli_toy at ``BERNOULLI``, p = sigmoid(theta). straight_through's sample is
    2 (b_j - t) p (1 - p) / d per coordinate (variance (2 p (1 - p) / d)^2 p (1 - p), bias
    (2p - 1) p (1 - p) / d); reinforce_loo at K = 2 is (f_1 - f_2) (s_1 - s_2) / 2, s = b - p,
    whose moments are enumerated over the 2^(2 d) joint outcomes."""
    d, t = BERNOULLI["d"], 0.45
    p = 1 / (1 + math.exp(-BERNOULLI["theta"]))
    if estimator == "straight_through":
        var = (2 * p * (1 - p) / d) ** 2 * p * (1 - p) / k
        bias = (2 * p - 1) * p * (1 - p) / d
        return Exact(d * var, d * var + d * bias**2, math.sqrt(d) * abs(bias))
    assert estimator == "reinforce_loo" and k == 2, (estimator, k)
    mean, square = np.zeros(d), 0.0
    for bits in itertools.product((0, 1), repeat=2 * d):
        b1, b2 = np.array(bits[:d]), np.array(bits[d:])
        prob = np.prod(np.where(np.array(bits) == 1, p, 1 - p))
        f1, f2 = ((b1 - t) ** 2).mean(), ((b2 - t) ** 2).mean()
        g = (f1 - f2) * ((b1 - p) - (b2 - p)) / 2
        mean += prob * g
        square += prob * float(g @ g)
    trace = square - float(mean @ mean)
    return Exact(trace, trace, 0.0)


#: (problem, estimator, K): the cells of the table
CELLS = (
    ("gaussian_quadratic", "reparam", 10),
    ("gaussian_quadratic", "reinforce", 10),
    ("bernoulli_toy", "reinforce_loo", 2),
    ("bernoulli_toy", "straight_through", 2),
    ("gaussian_quadratic", "reinforce_loo", 2),
)


def exact(problem: str, estimator: str, k: int) -> Exact:
    """The exact moments of a cell of ``CELLS``."""
    if problem == "bernoulli_toy":
        return bernoulli_exact(estimator, k)
    return gaussian_quadratic_exact(estimator, k)


def draws(problem: str, estimator: str, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` estimates ``[n, D]`` (float64, torch's global generator) and the exact truth."""
    options = BERNOULLI if problem == "bernoulli_toy" else {}
    prob = get_problem(problem)(options, dtype=torch.float64)
    return draw_estimates(prob, get_estimator(estimator)(), k, n), flat_truth(prob, k)


def measure(problem: str, estimator: str, k: int, repeats: int, cells: int) -> dict[str, float]:
    """Coverage rates of the cell's intervals over ``cells`` cells of R = ``repeats``, the
    bias test's rejection rate at 5%, and the share of cells flagged ``heavy_tails``."""
    target = exact(problem, estimator, k)
    torch.manual_seed(derive_seed("coverage", problem, estimator, k, repeats, cells))
    estimates, truth = draws(problem, estimator, k, cells * repeats)
    hits = {"variance_trace": 0, "mse": 0, "bias": 0, "rejects": 0, "heavy_tails": 0}
    for part in np.split(estimates, cells):
        acc = Accumulator(part.shape[1], torch.tensor(truth), None, n_bootstrap=0, seed=0,
                          n_repeats=repeats)
        acc.add(torch.tensor(part))
        s = acc.summary().scalars
        for name, value in (("variance_trace", target.trace), ("mse", target.mse),
                            ("bias", target.bias)):
            if value is not None:
                hits[name] += s[f"{name}_ci_low"] <= value <= s[f"{name}_ci_high"]
        hits["rejects"] += s["bias_p_value"] < 0.05
        hits["heavy_tails"] += s["heavy_tails"]
    out = {name: count / cells for name, count in hits.items()}
    for name, value in (("variance_trace", target.trace), ("mse", target.mse)):
        if value is None:
            out[name] = math.nan
    return out


def table(cells: int, repeats: tuple[int, ...] = (200, 1000)) -> str:
    """The Markdown table of docs/intervals.md."""
    lines = [
        "| cell | R | variance | mse | bias | bias test rejects at 5% | heavy_tails |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for (problem, estimator, k), r in itertools.product(CELLS, repeats):
        rates = measure(problem, estimator, k, r, cells)
        row = [f"`{estimator}` on `{problem}`, K = {k}", str(r)]
        row += ["–" if math.isnan(rates[n]) else f"{rates[n]:.3f}"
                for n in ("variance_trace", "mse", "bias", "rejects", "heavy_tails")]
        lines.append("| " + " | ".join(row) + " |")
    se = math.sqrt(0.95 * 0.05 / cells)
    lines.append("")
    lines.append(f"{cells} cells per row: a binomial standard error of {se:.4f} at 0.95.")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(table(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
