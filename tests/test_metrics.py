"""The cell statistics (bench/cell/metrics.py): the block Poisson bootstrap, the squared-bias
statistic and its interval, the heavy-tail warning and the floating-point tolerance of the
bias test. Coverage is checked by seeded simulation: an interval of nominal level 0.95 over
n independent cells covers its target a Binomial(n, 0.95) number of times, so the observed
rate must lie within z_threshold(1) binomial standard errors of 0.95."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import bench
from bench.cell import blocks
from bench.cell.blocks import poisson_weights
from bench.cell.estimate import estimate_chunks, measured_chunk_size, prepare
from bench.cell.metrics import Accumulator
from estimators import ESTIMATORS, get_estimator
from estimators.base import Estimator, Surrogate
from problems import get_problem
from problems.base import Capability
from tests.examples import ESTIMATOR_EXAMPLES
from tests.stats import draw_estimates, flat_truth, z_threshold

NOMINAL = 0.95


def summaries(estimates: np.ndarray, truth: np.ndarray, cells: int, **kw) -> list[dict]:
    """Split ``estimates`` ``[cells * R, D]`` into ``cells`` cells and summarise each."""
    out = []
    for seed, part in enumerate(np.split(estimates, cells)):
        acc = Accumulator(part.shape[1], torch.tensor(truth), None, seed=seed,
                          n_repeats=part.shape[0], **({"n_bootstrap": 0} | kw))
        acc.add(torch.tensor(part))
        out.append(acc.summary().scalars)
    return out


def covered(rows: list[dict], name: str, target: float) -> float:
    return float(np.mean([r[f"{name}_ci_low"] <= target <= r[f"{name}_ci_high"] for r in rows]))


def assert_nominal(rate: float, cells: int) -> None:
    margin = z_threshold(1) * math.sqrt(NOMINAL * (1 - NOMINAL) / cells)
    assert abs(rate - NOMINAL) <= margin, f"coverage {rate:.3f}, expected {NOMINAL} +- {margin:.3f}"


def bernoulli_cells(estimator: str, cells: int, repeats: int, theta: float):
    """Estimates of K = 2 on bernoulli_toy d = 3 (float64), and the exact truth."""
    prob = get_problem("bernoulli_toy")({"d": 3, "theta": theta}, dtype=torch.float64)
    estimates = draw_estimates(prob, get_estimator(estimator)(), 2, cells * repeats)
    return estimates, flat_truth(prob)


def straight_through_bias_sq(theta: float, d: int) -> float:
    """Straight-through's per-sample estimate on bernoulli_toy is 2 (b - t) p (1 - p) / d, of
    mean 2 (p - t) p (1 - p) / d against the truth (1 - 2t) p (1 - p) / d: the bias is
    (2p - 1) p (1 - p) / d in every coordinate."""
    p = 1 / (1 + math.exp(-theta))
    return d * ((2 * p - 1) * p * (1 - p) / d) ** 2


def test_bias_sq_interval_covers_zero_for_an_unbiased_estimator():
    cells = 400
    estimates, truth = bernoulli_cells("reinforce_loo", cells, 200, theta=1.0)
    rows = summaries(estimates, truth, cells)
    assert_nominal(covered(rows, "bias_sq", 0.0), cells)
    # bias_sq is unbiased: its mean over the cells is 0 within its standard error
    values = np.array([r["bias_sq"] for r in rows])
    assert abs(values.mean()) <= z_threshold(1) * values.std(ddof=1) / math.sqrt(cells)
    # while bias_l2's bootstrap interval, the statistic's, never contains 0 (why bias exists)
    boot = summaries(estimates[: 20 * 200], truth, 20, n_bootstrap=200)
    assert all(r["bias_l2_ci_low"] > 0 for r in boot)


def test_bias_sq_interval_covers_a_known_bias_and_excludes_zero():
    """Non-vacuity: straight-through's exact squared bias is covered at the nominal rate, and
    zero is rejected in most cells (the interval has power)."""
    cells, theta = 400, 1.0
    estimates, truth = bernoulli_cells("straight_through", cells, 200, theta)
    rows = summaries(estimates, truth, cells)
    exact = straight_through_bias_sq(theta, 3)
    assert_nominal(covered(rows, "bias_sq", exact), cells)
    assert covered(rows, "bias_sq", 0.0) < 0.2


@pytest.mark.slow
@pytest.mark.parametrize(("dim", "repeats"), [(1, 20), (1, 5000), (8, 300), (50, 3000)])
def test_bias_sq_coverage_in_many_settings(dim, repeats):
    """Gaussian estimates with a correlated, ill-conditioned covariance, with and without a
    bias, with an exact truth and with a reference truth of known standard error; R from
    below the block count (one estimate per block) to many estimates per block."""
    cells = 1000 if dim * repeats <= 10_000 else 400
    gen = torch.Generator().manual_seed(dim * 100_000 + repeats)
    mixing = torch.randn(dim, dim, generator=gen, dtype=torch.float64) / math.sqrt(dim)
    mixing += 0.3 * torch.eye(dim, dtype=torch.float64)
    mixing[0] *= 5
    for bias_size, truth_se in ((0.0, None), (0.0, 0.02), (0.3 / math.sqrt(repeats), None)):
        bias = torch.zeros(dim, dtype=torch.float64)
        bias[-1] = bias_size
        hits = 0
        for cell in range(cells):
            noise = torch.randn(repeats, dim, generator=gen, dtype=torch.float64)
            truth, se = torch.zeros(dim, dtype=torch.float64), None
            if truth_se is not None:
                se = torch.full((dim,), truth_se, dtype=torch.float64)
                truth = truth + se * torch.randn(dim, generator=gen, dtype=torch.float64)
            acc = Accumulator(dim, truth, se, n_bootstrap=0, seed=cell, n_repeats=repeats)
            acc.add(noise @ mixing.T + bias)
            s = acc.summary().scalars
            hits += s["bias_sq_ci_low"] <= bias_size**2 <= s["bias_sq_ci_high"]
        # a little slack below nominal at tiny R (s0 estimated from 19 blocks)
        assert_nominal(min(hits / cells + (0.02 if repeats < 100 else 0), NOMINAL), cells)


def gaussian_quadratic_cells(estimator: str, cells: int, repeats: int, bootstrap: int):
    """K = 1 on gaussian_quadratic (mu = 1, sigma = 1, k = 0, d = 1), float64."""
    prob = get_problem("gaussian_quadratic")({}, dtype=torch.float64)
    estimates = draw_estimates(prob, get_estimator(estimator)(), 1, cells * repeats)
    return summaries(estimates, flat_truth(prob), cells, n_bootstrap=bootstrap)


def test_heavy_tails_flag_reinforce_but_not_reparam():
    """REINFORCE with K = 1 on gaussian_quadratic: g = (1 + e)^2 (e, e^2 - 1), e ~ N(0, 1),
    a degree-4 polynomial of a Gaussian (kurtosis of its distance to the mean ~175);
    reparam's g = 2 (1 + e) (1, e) has kurtosis ~10. At R = 2000 the first flags, the
    second does not."""
    heavy = gaussian_quadratic_cells("reinforce", 5, 2000, bootstrap=0)
    light = gaussian_quadratic_cells("reparam", 5, 2000, bootstrap=0)
    assert all(r["heavy_tails"] for r in heavy), [r["kurtosis"] for r in heavy]
    assert not any(r["heavy_tails"] for r in light), [r["kurtosis"] for r in light]
    assert all(5 < r["kurtosis"] < 20 for r in light)


@pytest.mark.slow
def test_variance_interval_undercovers_where_heavy_tails_warn():
    """What the warning means: the variance trace's interval covers the exact
    trace (REINFORCE 30 + 136, reparam 4 + 12; moments of N(0, 1)) at about the nominal
    rate for reparam, and well below it for REINFORCE K = 1, at R = 2000."""
    cells = 300
    light = gaussian_quadratic_cells("reparam", cells, 2000, bootstrap=500)
    assert_nominal(covered(light, "variance_trace", 16.0), cells)
    heavy = gaussian_quadratic_cells("reinforce", cells, 2000, bootstrap=500)
    assert covered(heavy, "variance_trace", 166.0) < 0.9
    assert np.mean([r["heavy_tails"] for r in heavy]) > 0.9


def test_block_sums_keep_the_variance_trace_interval_nominal():
    """R = 3000 is six estimates per block, so the interval's sum of squared inner products
    comes from the blocks' tr(Cov^2): the variance trace's interval still covers
    at the nominal rate (reinforce_loo on bernoulli_toy d = 3; exact trace from 10^6
    draws, whose own error is 100x below an interval's width)."""
    cells = 200
    estimates, truth = bernoulli_cells("reinforce_loo", cells, 3000, theta=1.0)
    exact = float(estimates.var(0, ddof=1).sum())
    rows = summaries(estimates, truth, cells, n_bootstrap=300)
    assert rows[0]["bootstrap_blocks"] == blocks.BLOCKS
    assert_nominal(covered(rows, "variance_trace", exact), cells)


def test_statistics_do_not_depend_on_how_the_estimates_are_chunked():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(2503, 4, generator=gen, dtype=torch.float64) + 1.0
    one = Accumulator(4, torch.ones(4), None, 200, seed=3, n_repeats=2503)
    one.add(g)
    many = Accumulator(4, torch.ones(4), None, 200, seed=3, n_repeats=2503)
    for part in torch.tensor_split(g, [1, 7, 700, 701, 2000]):
        many.add(part)
    first, second = one.summary().scalars, many.summary().scalars
    # m = ceil(2503 / 500) = 6, so 418 blocks, the last of 1
    assert first["bootstrap_blocks"] == second["bootstrap_blocks"] == 418
    assert first["interval_method"] == second["interval_method"] == "scaled_chi2"
    for name, value in first.items():
        if name == "interval_method":
            continue
        # the kurtosis is about the final mean up to one term taken from the blocks, and the
        # shift is the first row here: 1.5 = 1 + 2 / D for Gaussian estimates
        rel = 0.05 if name == "kurtosis" else 1e-12
        assert second[name] == pytest.approx(value, rel=rel), name
    assert first["kurtosis"] == pytest.approx(1.5, rel=0.05)


def test_poisson_weights_have_the_poisson_1_law():
    gen = torch.Generator().manual_seed(0)
    weights = poisson_weights(1000, 1000, gen).numpy().ravel()
    counts = np.bincount(weights.astype(int), minlength=8)[:8] / weights.size
    exact = np.array([math.exp(-1) / math.factorial(k) for k in range(8)])
    se = np.sqrt(exact * (1 - exact) / weights.size)
    assert np.all(np.abs(counts - exact) <= z_threshold(8) * se)
    assert np.all(weights == np.round(weights)) and weights.min() == 0


def test_replicates_are_never_cut_and_block_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 2**16)  # 81 blocks of 100 coordinates
    acc = Accumulator(100, torch.zeros(100), None, 1000, seed=0, n_repeats=5000)
    acc.add(torch.randn(5000, 100))
    s = acc.summary().scalars
    assert s["bootstrap_blocks"] == blocks.MIN_BLOCKS
    assert acc.n_bootstrap == 1000
    assert s["variance_trace_ci_low"] < 100 < s["variance_trace_ci_high"]


def _chunk_peak(prob, est, point, k, state, size):
    """The peak live tensor bytes of one chunk of ``size`` repeats, as the harness draws it."""
    from bench.cell.estimate import expand_state, one_estimate
    from bench.cell.timing import live_bytes
    from estimators.base import flatten
    from problems.base import repeat_params

    def step():
        grads, _ = one_estimate(prob, est, repeat_params(point, size), k, expand_state(state, size))
        flatten(grads)

    with torch.random.fork_rng():
        return max(live_bytes(step, torch.device("cpu")))


@pytest.mark.parametrize("problem, options, estimator, k", [
    ("bernoulli_toy", {"d": 200}, "reinforce_loo", 2),
    ("bernoulli_toy", {"d": 10**4}, "gumbel_softmax", 4),
    ("categorical_vae", {}, "indecater", 10),
    ("categorical_vae", {}, "arsm", 10),
])
def test_chunks_fit_their_measured_footprint_to_the_budget(problem, options, estimator, k):
    """A chunk's measured peak (autograd's temporaries included) fits the budget, and not
    vacuously: twice the chunk would not. The old count (a parameter copy and its gradient
    per repeat, and per sample the network's activations) is its broken twin: on the
    categorical VAE at K = 10 with ARSM or IndeCateR its chunk overshoots the budget."""
    memory = 2**24  # 16 MiB: small chunks, a cheap test
    prob = get_problem(problem)(options)
    point = prob.init_params()
    est = get_estimator(estimator)()
    torch.manual_seed(0)
    state, _ = prepare(prob, est, point, k)
    chunk = measured_chunk_size(prob, est, point, k, 10**6, state, memory)
    held = 4 * sum(v.numel() for v in point.values())  # the previous chunk's row
    assert 2 <= chunk < 10**6
    assert _chunk_peak(prob, est, point, k, state, chunk) + held * chunk <= memory
    assert _chunk_peak(prob, est, point, k, state, 2 * chunk) > memory
    if problem == "categorical_vae":  # the old count: per sample, the network's activations
        widths = prob.data.n_pixels * 2 + prob.n_units + 2 * sum(prob.hidden)
        per_sample = 4 * prob.option_values["batch"] * widths
        counted = memory // (4 * (held // 4 * 4 + k * per_sample))
        assert counted > chunk
        assert _chunk_peak(prob, est, point, k, state, counted) > memory


def test_the_probes_leave_the_random_stream_alone():
    """Chunks sized by the probes equal chunks of that size given outright: the probes draw
    under a forked random state."""
    prob = get_problem("bernoulli_toy")({"d": 50})
    point = prob.init_params()
    draws = []
    for size in (None, "measured"):
        est = get_estimator("reinforce_loo")()
        torch.manual_seed(3)
        state, _ = prepare(prob, est, point, 2)
        if size == "measured":
            size = measured_chunk_size(prob, est, point, 2, 5000, state, 2**20)
            assert size < 5000  # more than one chunk
        draws.append(torch.cat(list(estimate_chunks(prob, est, point, 2, 5000, state, size,
                                                     memory=2**20))))
    assert torch.equal(draws[0], draws[1])


class ExactObjective(Estimator):
    """A zero-variance estimate: the gradient of the closed-form objective (float32)."""

    name = "exact_objective_stub"
    description = "autograd of the exact objective"
    requires = frozenset({Capability.EXACT_OBJECTIVE})
    unbiased = True

    def surrogate(self, problem, params, n_samples, state):
        return Surrogate(loss=problem.objective(params), samples=torch.zeros(0))


def test_a_zero_variance_estimator_is_not_called_biased_by_rounding():
    """Autograd of bernoulli_toy's objective and its closed-form gradient differ by float32
    rounding only (theta = 0.2, d = 3: 1 ulp, 1e-9 against 8e-3); the bias test must not
    call that a bias, and bias_sq's interval must contain 0. A real bias of 1e-4 relative
    is still found."""
    prob = get_problem("bernoulli_toy")({"d": 3, "theta": 0.2})
    point = prob.init_params()
    truth = prob.truth(point).grad["theta"]  # float32
    chunks = list(estimate_chunks(prob, ExactObjective(), point, 1, 50, {}))
    assert all(c.dtype == torch.float32 for c in chunks)
    for estimates, biased in ((torch.cat(chunks), False), (truth * (1 + 1e-4), True)):
        acc = Accumulator(3, truth, None, 50, seed=0, n_repeats=50)
        acc.add(estimates.expand(50, 3))
        s = acc.summary().scalars
        if biased:
            assert s["bias_p_value"] < 1e-10 and s["bias_sq_ci_low"] > 0
            continue
        assert s["variance_trace"] == 0.0
        assert bool((estimates != truth).any()), "no rounding difference: the test is vacuous"
        assert s["bias_p_value"] == 1.0
        assert s["bias_sq_ci_low"] <= 0.0 <= s["bias_sq_ci_high"]


def test_the_harness_does_not_import_scipy_stats():
    """``scipy.stats`` takes seconds to import; the Student-t tail is ``scipy.special``'s.
    (The figures may import it: they are not part of a measurement.)"""
    root = Path(bench.__file__).parent
    for path in [*(root / "cell").rglob("*.py"), *(root / "sweep").rglob("*.py")]:
        assert "scipy.stats" not in path.read_text(), f"{path} imports scipy.stats"


#: a problem of each latent kind, the first that an estimator applies to is its setting
PROBE_PROBLEMS = (("bernoulli_toy", {"d": 3}), ("categorical_toy", {"d": 2, "classes": 3}),
                  ("gaussian_quadratic", {"d": 2}), ("gamma_quadratic", {"d": 2}),
                  ("poisson_quadratic", {"d": 2}), ("k_subset", {}), ("policy", {}),
                  ("bernoulli_iwae", {"d": 3}), ("gaussian_elbo", {"d": 2}))


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_no_estimator_is_changed_by_the_probes(name):
    """Every estimator draws the same estimates whether its chunk size is measured (probe
    chunks run first) or given: the probes leave its state and the random stream alone."""
    cls = ESTIMATORS[name]
    setting = next(((p, o) for p, o in PROBE_PROBLEMS
                    if cls.incompatibility(get_problem(p), o) is None), None)
    if setting is None:
        pytest.skip(f"{name} applies to none of the probe problems")
    k = ESTIMATOR_EXAMPLES[name]["n_samples"]
    prob = get_problem(setting[0])(setting[1])
    point = prob.init_params()
    options = dict(ESTIMATOR_EXAMPLES[name].get("options", {}))

    def prepared():
        est = cls(options)
        torch.manual_seed(11)
        return est, prepare(prob, est, point, k)[0]

    est, state = prepared()
    given = measured_chunk_size(prob, est, point, k, 40, state)
    draws = []
    for size in (None, given):  # probes first, then none at all
        est, state = prepared()
        draws.append(torch.cat(list(estimate_chunks(prob, est, point, k, 40, state, size))))
    assert torch.equal(draws[0], draws[1])
