"""Plugins extend the registry of one invocation (``bench.registry``): never the built-in
lists, never the next invocation in the same process; a class given to ``run_sweep`` in
place of a name works on every executor because each worker builds the same registry
again, and a worker that skipped that would fail with the unknown-name error."""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bench.cell.spec import CellSpec
from bench.cli import main
from bench.registry import (
    BUILTINS,
    Registry,
    current_registry,
    estimator_class,
    problem_class,
    use_registry,
)
from bench.sweep.executors import ExecutorConfig, ProcessExecutor
from bench.sweep.executors import base as executor_base
from bench.sweep.plugins import load_plugins, rebuild
from bench.sweep.run import run_sweep
from bench.sweep.spec import SweepSpec, expand
from estimators import ESTIMATORS
from estimators.score_function import Reinforce
from problems import PROBLEMS

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.sweep_plugin"  # defines the problems misbehaving_toy and data_toy


class Renamed(Reinforce):
    """REINFORCE under another name: a class given in place of a name (module level, so
    that a spawned worker process can unpickle it)."""

    name = "renamed_reinforce"
    description = "REINFORCE under another name (tests only)"


@dataclass(frozen=True)
class SkippingConfig(ExecutorConfig):
    """A worker configuration that skips rebuilding the driver's registry."""

    def registry(self, search: tuple[str, ...] | None = None) -> Registry:
        return BUILTINS


def sweep_with_class(out: Path, **executor) -> list[str]:
    cells = run_sweep(estimators=[Renamed, "reinforce"], problems="bernoulli_toy",
                      samples=[2], repeats=20, bootstrap=0, progress=False, out=out, **executor)
    assert sorted(cells["estimator"]) == ["reinforce", "renamed_reinforce"]
    return list(cells["status"])


@pytest.fixture
def builtins_unchanged():
    saved = dict(PROBLEMS), dict(ESTIMATORS)
    yield
    assert (dict(PROBLEMS), dict(ESTIMATORS)) == saved
    assert current_registry() is BUILTINS


def test_a_plugin_of_one_invocation_is_not_visible_after_it(capsys, builtins_unchanged):
    assert main(["list", "--plugin", PLUGIN]) == 0
    assert "misbehaving_toy:" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "misbehaving_toy" not in capsys.readouterr().out
    assert "misbehaving_toy" not in PROBLEMS
    with pytest.raises(ValueError, match="unknown problem 'misbehaving_toy'; valid problems: "
                                         "gaussian_quadratic, "):
        problem_class("misbehaving_toy")
    with pytest.raises(ValueError, match="unknown problem 'misbehaving_toy'"):
        expand(SweepSpec(estimators=("reinforce",), problems=("misbehaving_toy",),
                         samples=(2,), repeats=10))


def test_run_sweep_plugins_and_classes_last_for_that_call(tmp_path, builtins_unchanged):
    assert sweep_with_class(tmp_path / "a") == ["ok", "ok"]
    cells = run_sweep(estimators="reinforce", problems="misbehaving_toy", samples=[2],
                      repeats=20, bootstrap=0, progress=False, out=tmp_path / "b",
                      plugins=[PLUGIN])
    assert list(cells["status"]) == ["ok"]
    assert "renamed_reinforce" not in current_registry().estimators
    with pytest.raises(ValueError, match="unknown estimator 'renamed_reinforce'"):
        estimator_class("renamed_reinforce")


def test_a_registry_is_immutable_and_adding_returns_a_new_one(builtins_unchanged):
    extended = BUILTINS.with_class(Renamed)
    assert extended is not BUILTINS and "renamed_reinforce" not in BUILTINS.estimators
    assert extended.estimators["renamed_reinforce"] is Renamed
    assert extended.classes == (Renamed,)
    assert extended.with_class(Renamed) is extended  # the same class again: nothing to add
    with pytest.raises(TypeError):
        extended.estimators["other"] = Renamed  # type: ignore[index]

    class Other(Reinforce):
        name = "renamed_reinforce"
        description = "another class under a taken name (tests only)"

    message = (f"estimator 'renamed_reinforce' is already registered to {Renamed.__module__}"
               ".Renamed; plugins may add names, never replace them")
    with pytest.raises(ValueError, match=re.escape(message)):
        extended.with_class(Other)
    with pytest.raises(ValueError, match="neither a problem nor an estimator class"):
        BUILTINS.with_class(int)


def test_use_registry_holds_for_its_block_and_not_in_a_new_thread(builtins_unchanged):
    registry = load_plugins([PLUGIN], base=BUILTINS)
    assert registry.plugins == (PLUGIN,) and load_plugins([PLUGIN], base=registry) == registry
    seen = []
    with use_registry(registry):
        assert problem_class("misbehaving_toy") is registry.problems["misbehaving_toy"]
        with use_registry(BUILTINS):
            assert current_registry() is BUILTINS
        assert current_registry() is registry
        thread = threading.Thread(target=lambda: seen.append(current_registry()))
        thread.start()
        thread.join()
    assert seen == [BUILTINS]  # a thread starts with the default: pass the registry to it


def test_rebuild_gives_the_drivers_registry(builtins_unchanged):
    driver = load_plugins([PLUGIN], base=BUILTINS).with_class(Renamed)
    with use_registry(BUILTINS.with_class(Reinforce)):  # a worker's own state stays out
        rebuilt = rebuild(driver.plugins, driver.classes, (str(ROOT),))
    assert rebuilt == driver


@pytest.mark.parametrize("executor", [{}, {"executor": "process", "workers": 1}])
def test_run_sweep_takes_a_class_on_local_and_process_executors(tmp_path, executor,
                                                                builtins_unchanged):
    assert sweep_with_class(tmp_path, **executor) == ["ok", "ok"]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install -e '.[ray]')")
@pytest.mark.parametrize("timeout", [None, 120])  # 120: the cell runs in a thread of the task
def test_run_sweep_takes_a_class_on_ray_with_and_without_a_timeout_thread(
    tmp_path, monkeypatch, timeout, builtins_unchanged
):
    # the workers of a local Ray instance import what is pickled by reference (Renamed, of
    # this module) from the driver's environment, as cluster nodes from the installed package
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), str(ROOT / "tests"), *([path] if path else [])]))

    class Local(Reinforce):  # defined here: Ray pickles it by value, as from a notebook
        name = "local_reinforce"
        description = "REINFORCE under another name (tests only)"

    cells = run_sweep(estimators=[Local, Renamed], problems="bernoulli_toy", samples=[2],
                      repeats=20, bootstrap=0, progress=False, out=tmp_path,
                      executor="ray", cell_timeout=timeout)
    assert list(cells["status"]) == ["ok", "ok"], list(cells["reason"])


def test_a_worker_that_skips_the_rebuild_fails_with_the_unknown_name(monkeypatch):
    """Non-vacuity of the tests above: a fresh thread is a fresh worker's context."""
    spec = CellSpec(problem="bernoulli_toy", problem_options=(), estimator="renamed_reinforce",
                    estimator_options=(), n_samples=2, n_repeats=20, seed=0, device="cpu",
                    dtype="float32", n_bootstrap=0)
    config = ExecutorConfig(classes=(Renamed,))
    outcome: list[object] = []

    def worker() -> None:
        try:
            env, registry = executor_base.start_worker(config, 1, "cpu", prepare=False)
            outcome.append(executor_base.run_cell_guarded(spec, "r", env, registry)[0])
        except ValueError as err:
            outcome.append(err)

    threads = torch.get_num_threads()  # start_worker sets the process's thread count
    try:
        for skip in (False, True):
            if skip:
                monkeypatch.setattr(executor_base, "rebuild", lambda *args: BUILTINS)
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
    finally:
        torch.set_num_threads(threads)
    assert outcome[0]["status"] == "ok"
    assert isinstance(outcome[1], ValueError)
    assert str(outcome[1]).startswith("unknown estimator 'renamed_reinforce'; valid estimators: ")


def test_a_pool_worker_that_skips_the_rebuild_fails_with_the_unknown_name(tmp_path, capfd):
    spec = CellSpec(problem="bernoulli_toy", problem_options=(), estimator="renamed_reinforce",
                    estimator_options=(), n_samples=2, n_repeats=20, seed=0, device="cpu",
                    dtype="float32", n_bootstrap=0)
    results = {}
    for config in (ExecutorConfig(kind="process", classes=(Renamed,)),
                   SkippingConfig(kind="process", classes=(Renamed,))):
        with use_registry(BUILTINS.with_class(Renamed)), \
                ProcessExecutor(config, "cpu", "r", 1, 1) as pool:
            [(row, _)] = list(pool.run([spec]))
        results[type(config).__name__] = row
    assert results["ExecutorConfig"]["status"] == "ok"
    assert results["SkippingConfig"]["status"] == "failed"
    assert results["SkippingConfig"]["reason"].startswith("worker process died")
    assert "ValueError: unknown estimator 'renamed_reinforce'" in capfd.readouterr().err
