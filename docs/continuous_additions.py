"""The measured tables of issue 25: LAX at its two ends and trained, the randomized quasi-Monte
Carlo slope and the Gamma estimators' variance ordering (docs/estimators_continuous.md), and
the stochastic softmax tricks on k-subsets (docs/estimators_categorical.md).

    python docs/continuous_additions.py [lax|rqmc|gamma|subset|relaxed ...]   # default: all

Every estimate is drawn by the harness's kernel (``bench.cell.estimate``: ``prepare`` warms a
learned estimator up and freezes it, ``estimate_chunks`` draws the R estimates), float64,
single-threaded, each table from a fixed seed. Intervals: a variance's 95% interval is
+- 1.96 standard errors from the sample's fourth moment, se(v) = sqrt((m4 - v^2) / R); a
slope's is the 95% percentile bootstrap over the repeats of every K (1000 resamples).

1. ``lax``: gaussian_quadratic (mu = sigma = 1, d = 1, K = 1) at the targets k = 0, 1, 3, -3 of
   Grathwohl et al. (2018) and Mohamed et al. (2020, Figure 2): the variance of the estimate of
   dL/dmu for reinforce, lax with c = 0 and c = f (eta = 0 and 1, untrained), lax trained (the
   default 200 steps), and reparam, next to the closed forms a^4 + 14 a^2 + 15 and 4
   (a = mu - k; tests/test_lax.py). R = 100000.
2. ``rqmc``: gaussian_quadratic (mu = sigma = 1, k = 0, d = 1 and d = 3) at K = 2 .. 256:
   the variance (trace) of rqmc_reparam and reparam, and the slope of log variance against
   log K. R = 2000 per K.
3. ``gamma``: gamma_quadratic (beta = 1, t = 1, d = 1, K = 1) at alpha = 1, 1.5, 3: the
   variance of the estimate of dL/dalpha for reparam, implicit_reparam, generalized_reparam
   and rsvi with B = 0, 1, 3, and each one's bias z against the closed form 1 + 2 alpha - 2 t.
   R = 10^6.
4. ``subset``: k_subset (n = 6, k = 3, theta = 1, K = 4): the score functions, sst and st_sst
   at tau = 0.1, 0.5, 1: the bias norm ||E g - grad L||, the largest bias z, the variance
   (trace) with its interval (the trace's standard error from the fourth moment of the
   squared deviation's sum). R = 20000.
5. ``relaxed``: bernoulli_toy (theta = 1, d = 2) and categorical_toy (theta = 1, d = 2, C = 4),
   K = 4: leave-one-out REINFORCE and the relaxations (gumbel_softmax, st_gumbel_softmax, igr
   with its default sigma = delta = 1) at tau = 0.1, 0.5, 1, and decoupled_st at five
   (tau_forward, tau_backward) off the diagonal, the same columns as ``subset``
   against the exact gradient (docs/estimators_continuous.md). R = 20000.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from bench.cell.estimate import estimate_chunks, prepare
from estimators import get_estimator
from problems import get_problem

SEED = 0


def draw(problem_name: str, problem_options: dict, estimator: str, options: dict,
         n_samples: int, n_repeats: int, seed: int = SEED) -> np.ndarray:
    """``n_repeats`` estimates ``[R, D]`` through the harness's kernel, from ``seed``."""
    problem = get_problem(problem_name)(problem_options, dtype=torch.float64)
    est = get_estimator(estimator)(options)
    point = problem.init_params()
    torch.manual_seed(seed)
    state, _ = prepare(problem, est, point, n_samples)
    chunks = estimate_chunks(problem, est, point, n_samples, n_repeats, state)
    return torch.cat([c.detach() for c in chunks]).double().numpy()


def variance_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Variance of ``values`` ``[R]`` and its 95% interval (fourth-moment standard error)."""
    centred = values - values.mean()
    variance = float(centred.var(ddof=1))
    se = math.sqrt(max(np.mean(centred**4) - variance**2, 0.0) / values.size)
    return variance, variance - 1.96 * se, variance + 1.96 * se


def cell(values: np.ndarray) -> str:
    v, lo, hi = variance_interval(values)
    return f"{v:.4g} [{lo:.4g}, {hi:.4g}]"


def lax_table() -> str:
    columns = [("reinforce", {}), ("lax", {"eta": 0.0, "warmup": 0}), ("lax", {}),
               ("lax", {"eta": 1.0, "warmup": 0}), ("reparam", {})]
    names = ["reinforce", "lax (c = 0)", "lax (trained)", "lax (c = f)", "reparam"]
    lines = ["| k | closed form, score | " + " | ".join(names) + " | closed form, pathwise |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for k in (0.0, 1.0, 3.0, -3.0):
        a = 1.0 - k
        options = {"mu": 1.0, "sigma": 1.0, "k": k, "d": 1}
        row = [cell(draw("gaussian_quadratic", options, e, o, 1, 100_000)[:, 0])
               for e, o in columns]
        lines.append(f"| {k:g} | {a**4 + 14 * a**2 + 15:g} | " + " | ".join(row) + " | 4 |")
    return "\n".join(lines)


def slope(estimates: dict[int, np.ndarray], rng: np.random.Generator) -> tuple[float, ...]:
    """Least-squares slope of log variance (trace) on log K, and its bootstrap interval."""
    logs = np.log(np.array(list(estimates)))

    def fit(samples):
        return float(np.polyfit(logs, np.log([s.var(0, ddof=1).sum() for s in samples]), 1)[0])

    values = list(estimates.values())
    boot = [fit([v[rng.integers(0, len(v), len(v))] for v in values]) for _ in range(1000)]
    return (fit(values), *np.quantile(boot, [0.025, 0.975]))


def rqmc_table() -> str:
    samples = [2**m for m in range(1, 9)]
    lines = ["| d | estimator | " + " | ".join(f"K = {k}" for k in samples)
             + " | slope [95% CI] |", "|---|---|" + "---|" * len(samples) + "---|"]
    for d in (1, 3):
        options = {"mu": 1.0, "sigma": 1.0, "k": 0.0, "d": d}
        for name in ("reparam", "rqmc_reparam"):
            estimates = {k: draw("gaussian_quadratic", options, name, {}, k, 2000, SEED + k)
                         for k in samples}
            fitted, low, high = slope(estimates, np.random.default_rng(SEED))
            shown = [f"{e.var(0, ddof=1).sum():.3g}" for e in estimates.values()]
            lines.append(f"| {d} | `{name}` | " + " | ".join(shown)
                         + f" | {fitted:.2f} [{low:.2f}, {high:.2f}] |")
    return "\n".join(lines)


def gamma_table() -> str:
    columns = [("reparam", {}), ("implicit_reparam", {}), ("generalized_reparam", {}),
               ("rsvi", {"boost": 0}), ("rsvi", {"boost": 1}), ("rsvi", {"boost": 3})]
    names = ["reparam", "implicit_reparam", "generalized_reparam", "rsvi (B = 0)",
             "rsvi (B = 1)", "rsvi (B = 3)"]
    lines = ["| alpha | " + " | ".join(names) + " | max bias z |",
             "|---|" + "---|" * len(names) + "---|"]
    for alpha in (1.0, 1.5, 3.0):
        options = {"alpha": alpha, "beta": 1.0, "t": 1.0, "d": 1}
        truth = 1 + 2 * alpha - 2 * 1.0
        row, worst = [], 0.0
        for e, o in columns:
            values = draw("gamma_quadratic", options, e, o, 1, 1_000_000)[:, 0]
            worst = max(worst, abs(values.mean() - truth) / (values.std(ddof=1) / math.sqrt(
                values.size)))
            row.append(cell(values))
        lines.append(f"| {alpha:g} | " + " | ".join(row) + f" | {worst:.2f} |")
    return "\n".join(lines)


def exact_gradient(problem_name: str, problem_options: dict) -> np.ndarray:
    """The problem's exact gradient at its initial point, flattened."""
    problem = get_problem(problem_name)(problem_options, dtype=torch.float64)
    return np.concatenate([g.reshape(-1).numpy() for g in
                           problem.truth(problem.init_params()).grad.values()])


def bias_table(problem_name: str, problem_options: dict,
               columns: list[tuple[str, dict]], n_samples: int = 4) -> str:
    """Bias norm ||E g - grad L||, largest bias z and variance (trace) with its interval (the
    trace's standard error from the fourth moment of the squared deviation's sum)."""
    truth = exact_gradient(problem_name, problem_options)
    lines = ["| estimator | bias norm | max bias z | variance (trace) [95% CI] |",
             "|---|---|---|---|"]
    for name, options in columns:
        values = draw(problem_name, problem_options, name, options, n_samples, 20_000)
        mean = values.mean(0)
        z = np.abs(mean - truth) / (values.std(0, ddof=1) / math.sqrt(len(values)))
        spread = ((values - mean) ** 2).sum(-1)  # per estimate; its mean is the trace
        trace = float(spread.sum() / (len(values) - 1))
        se = float(spread.std(ddof=1) / math.sqrt(len(values)))
        shown = " ".join(f"{k}={v:g}" for k, v in options.items())
        shown = f"{name} ({shown})" if options else name
        lines.append(f"| `{shown}` | {np.linalg.norm(mean - truth):.3g} | {z.max():.3g} "
                     f"| {trace:.3g} [{trace - 1.96 * se:.3g}, {trace + 1.96 * se:.3g}] |")
    return "\n".join(lines)


def subset_table() -> str:
    columns = [("reinforce", {}), ("reinforce_loo", {})] + [
        (name, {"tau": tau}) for name in ("sst", "st_sst") for tau in (0.1, 0.5, 1.0)]
    return bias_table("k_subset", SUBSET, columns)


def relaxed_table() -> str:
    columns = [("reinforce_loo", {})] + [
        (name, {"tau": tau}) for name in RELAXATIONS for tau in (0.1, 0.5, 1.0)] + [
        ("decoupled_st", {"tau_forward": f, "tau_backward": b}) for f, b in DECOUPLED]
    return "\n\n".join(
        f"{name} ({', '.join(f'{k} = {v:g}' for k, v in options.items())}; ||grad L|| = "
        f"{np.linalg.norm(exact_gradient(name, options)):.3g}):\n\n"
        f"{bias_table(name, options, columns)}" for name, options in RELAXED_PROBLEMS)


SUBSET = {"n": 6, "k": 3, "theta": 1.0}
RELAXATIONS = ("gumbel_softmax", "st_gumbel_softmax", "igr")
#: (tau_forward, tau_backward) of decoupled_st; (1, 1) is st_gumbel_softmax at tau = 1
DECOUPLED = ((1.0, 0.5), (1.0, 2.0), (0.5, 1.0), (2.0, 1.0), (0.5, 2.0))
RELAXED_PROBLEMS = [("bernoulli_toy", {"theta": 1.0, "d": 2}),
                    ("categorical_toy", {"theta": 1.0, "d": 2, "classes": 4})]
TABLES = {"lax": lax_table, "rqmc": rqmc_table, "gamma": gamma_table, "subset": subset_table,
          "relaxed": relaxed_table}


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    for name in names or list(TABLES):
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}; valid: {', '.join(TABLES)}")
        print(f"<!-- measured: {name} (python docs/continuous_additions.py {name}) -->")
        print(TABLES[name]())
        print("<!-- end -->\n")


if __name__ == "__main__":
    main(sys.argv[1:])
