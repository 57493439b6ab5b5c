"""The asv suites: they import, asv discovers them, they cover the registries, and one
applicable pair runs every kind of benchmark while an inapplicable one is skipped."""

from __future__ import annotations

import importlib
import json
import math
import re
from pathlib import Path

import pytest
import torch
from asv_runner.discovery import disc_benchmarks

from bench.cell import estimate
from benchmarks import bench_quality, bench_scale, bench_speed, common
from estimators import ESTIMATORS
from problems import PROBLEMS
from problems.base import repeat_params

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))


def _asv_config() -> dict:
    """asv.conf.json without its // comments (asv's own format)."""
    text = (ROOT / "asv.conf.json").read_text()
    return json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE))


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_imports(suite):
    importlib.import_module(f"benchmarks.{suite}")


def test_asv_discovers_the_suites():
    names = {b.name for b in disc_benchmarks(str(ROOT / "benchmarks"))}
    for expected in (
        "bench_speed.OneEstimate.time_estimate",
        "bench_speed.OneEstimate.peakmem_estimate",
        "bench_speed.VarianceMeasurement.time_variance",
        "bench_speed.VarianceMeasurement.peakmem_variance",
        "bench_speed.CellThroughput.time_estimates_with_statistics",
        "bench_speed.CellThroughput.track_statistics_share",
        "bench_quality.Quality.track_variance_trace",
        "bench_quality.Quality.track_bias_l2",
        "bench_quality.Training.track_final_test_nelbo",
        "bench_scale.CellMemory.peakmem_cell_d200_r1e6",
        "bench_scale.HarnessOverhead.track_overhead_ratio",
    ):
        assert expected in names
    assert {name.split(".")[0] for name in names} == set(SUITES)


def test_asv_config_keeps_its_files_under_dot_asv_and_pins_cpu_torch():
    config = _asv_config()
    assert config["repo"] == "."
    assert config["benchmark_dir"] == "benchmarks"
    for key in ("env_dir", "results_dir", "html_dir"):
        assert config[key].startswith(".asv/")
    assert "--no-deps" in config["build_command"][0]
    assert "-c {build_dir}/constraints-cpu.txt" in config["install_command"][0]


def test_suites_cover_the_estimator_registry_and_valid_problem_options():
    assert list(ESTIMATORS) == common.ESTIMATOR_NAMES
    for name in common.PROBLEM_OPTIONS:
        if name in PROBLEMS:
            common.make_problem(name)  # the options are valid
        else:
            with pytest.raises(NotImplementedError, match="not registered"):
                common.make_problem(name)


def test_an_applicable_pair_runs_every_benchmark():
    estimator, problem = "reinforce", "bernoulli_toy"
    one = bench_speed.OneEstimate()
    one.setup(estimator, problem)
    one.time_estimate(estimator, problem)
    one.peakmem_estimate(estimator, problem)
    variance = bench_speed.VarianceMeasurement()
    variance.setup(estimator, problem)
    variance.time_variance(estimator, problem)
    quality = bench_quality.measure_quality(estimator, problem)
    assert quality["variance_trace"] > 0 and math.isfinite(quality["bias_l2"])
    assert quality == bench_quality.measure_quality(estimator, problem)  # fixed seed


def test_an_inapplicable_pair_is_skipped():
    with pytest.raises(NotImplementedError, match="requires rsample"):
        bench_speed.OneEstimate().setup("reparam", "bernoulli_toy")
    quality = bench_quality.Quality()
    with pytest.raises(NotImplementedError):
        quality.setup({}, "reparam", "bernoulli_toy")


def test_cell_throughput_runs_with_and_without_bootstrap(monkeypatch):
    monkeypatch.setattr(bench_speed, "THROUGHPUT_R", 500)
    suite = bench_speed.CellThroughput()
    for bootstrap in bench_speed.CellThroughput.params[0]:
        suite.setup(bootstrap)
        suite.time_estimates_with_statistics(bootstrap)
        assert 0 < suite.track_statistics_share(bootstrap) < 100


def test_setup_builds_everything_the_timed_call_needs(monkeypatch):
    """A GAN's critic is trained in setup, not in the first timed call (issue 16, item 14)."""
    monkeypatch.setitem(common.PROBLEM_OPTIONS, "gan_discrete", {"critic_steps": 5})
    common._built.cache_clear()
    try:
        one = bench_speed.OneEstimate()
        one.setup("reinforce", "gan_discrete")
        assert one.pair.problem._critic is not None
        assert common.make_problem("gan_discrete") is one.pair.problem  # once per process
    finally:
        common._built.cache_clear()


def test_smoke_mode_benchmarks_a_registered_subset_on_small_problems(monkeypatch):
    monkeypatch.setenv(common.SMOKE_VARIABLE, "1")
    try:
        smoke = importlib.reload(common)
        assert list(common.SMOKE_PROBLEMS) == smoke.PROBLEM_NAMES
        assert set(smoke.ESTIMATOR_NAMES) <= set(ESTIMATORS) & set(common.SMOKE_ESTIMATORS)
        assert {"reinforce", "reparam", "gumbel_softmax"} <= set(smoke.ESTIMATOR_NAMES)
        assert [n for n in ESTIMATORS if n in smoke.ESTIMATOR_NAMES] == smoke.ESTIMATOR_NAMES
        for name in smoke.PROBLEM_NAMES:
            assert name in PROBLEMS and name in smoke.PROBLEM_OPTIONS
    finally:
        monkeypatch.delenv(common.SMOKE_VARIABLE)
        importlib.reload(common)
    assert list(ESTIMATORS) == common.ESTIMATOR_NAMES


def test_ci_script_runs_in_smoke_mode_and_quality_caches_have_long_timeouts():
    assert "export GRADBENCH_ASV_SMOKE=1" in (ROOT / "benchmarks" / "ci.sh").read_text()
    for suite in (bench_quality.Quality, bench_quality.Training):
        assert suite.setup_cache.timeout >= 1800 and suite.timeout >= 1800


def test_the_overhead_suite_times_the_same_estimates_both_ways():
    """The batched step of the overhead suite is the cell's computation, not a cheaper one:
    from the same seed it draws the same estimates, bit for bit, at R in one chunk; and the
    ratio it tracks is a positive ratio of times."""
    pair = common.make_pair("reinforce_loo", "bernoulli_vae")
    r = bench_scale.OVERHEAD_R
    torch.manual_seed(5)
    grads, _ = estimate.one_estimate(pair.problem, pair.estimator,
                                     repeat_params(pair.point, r), common.N_SAMPLES,
                                     estimate.expand_state(pair.state, r))
    torch.manual_seed(5)
    chunks = list(estimate.estimate_chunks(pair.problem, pair.estimator, pair.point,
                                           common.N_SAMPLES, r, pair.state))
    assert len(chunks) == 1 and torch.equal(estimate.flatten(grads), chunks[0])
    suite = bench_scale.HarnessOverhead()
    suite.setup("reinforce_loo", "bernoulli_vae")
    assert 0 < suite.track_overhead_ratio("reinforce_loo", "bernoulli_vae") < 10
