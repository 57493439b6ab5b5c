"""One problem, one truth per sweep (bench.cell.shared), and estimates that depend only on
what defines the measurement: not on the bootstrap count, nor on what ran before a cell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.cell import shared
from bench.cell.spec import CellSpec
from bench.sweep.run import run_sweep

PLUGIN = "tests.sweep_plugin"
#: a cheap GAN: its truth is a reference estimate (100 x 1000 reparam samples)
GAN = {"critic_steps": [20], "critic_width": [8], "gen_width": [4]}


def sweep(out: Path, **kw) -> pd.DataFrame:
    args = {"samples": [2], "repeats": 40, "bootstrap": 0, "progress": False} | kw
    return run_sweep(out=out, **args)


def coords(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "coords.parquet")


def test_gan_reference_truth_is_one_for_every_estimator_and_every_process(tmp_path):
    shared.clear()
    cells = sweep(
        tmp_path / "a",
        estimators="reinforce,reinforce_loo,reparam",
        problems="gan_continuous",
        settings=GAN,
    )
    assert (cells["status"] == "ok").all() and (cells["truth"] == "reference").all()
    table = coords(tmp_path / "a")
    per_cell = table.pivot_table(index=["param", "index"], columns="cell_key", values="true")
    assert per_cell.shape[1] == 3
    assert per_cell.nunique(axis=1).eq(1).all(), "estimators were given different truths"
    shared.clear()  # a fresh build, as another process or a later sweep would make it
    sweep(tmp_path / "b", estimators="reinforce", problems="gan_continuous", settings=GAN)
    again = coords(tmp_path / "b").set_index(["param", "index"])["true"]
    assert again.sort_index().equals(per_cell.iloc[:, 0].rename("true").sort_index())


def test_bootstrap_count_does_not_change_the_estimates(tmp_path):
    runs = {}
    for b in (0, 30):
        out = tmp_path / f"b{b}"
        runs[b] = sweep(
            out, estimators="reinforce,gumbel_softmax", problems="bernoulli_toy", bootstrap=b
        ).set_index("estimator")
        runs[b] = (runs[b], coords(out).set_index(["estimator", "param", "index"]))
    (cells0, coords0), (cells30, coords30) = runs[0], runs[30]
    assert (cells0["cell_key"] != cells30["cell_key"]).all()  # other intervals: other rows
    for column in ("bias_l2", "variance_trace", "mse", "cosine", "bias_p_value"):
        assert cells0[column].equals(cells30[column]), column
    assert coords0[["mean", "variance"]].equals(coords30[["mean", "variance"]])
    assert cells30["variance_trace_ci_low"].notna().all()


def test_seeds_ignore_the_bootstrap_and_problem_seeds_ignore_the_cell():
    base = CellSpec("bernoulli_toy", (("d", 1),), "reinforce", (), 2, 100, 0)
    other = CellSpec(
        "bernoulli_toy", (("d", 1),), "reinforce_loo", (("x", 1),), 5, 7, 3, n_bootstrap=0
    )
    assert base.cell_seed == CellSpec(*base.config().values()).cell_seed
    assert base.key != CellSpec(**(base.__dict__ | {"n_bootstrap": 0})).key
    assert base.cell_seed == CellSpec(**(base.__dict__ | {"n_bootstrap": 0})).cell_seed
    assert base.cell_seed != other.cell_seed
    assert base.problem_seed == other.problem_seed
    assert base.problem_seed != CellSpec(**(base.__dict__ | {"dtype": "float64"})).problem_seed


def test_each_problem_is_built_once_per_sweep_locally(tmp_path):
    shared.clear()
    log = tmp_path / "built.log"
    cells = sweep(
        tmp_path / "run",
        estimators="reinforce,reinforce_loo",
        problems="counting_toy,bernoulli_toy",
        plugins=[PLUGIN],
        settings={"log": [str(log)], "d": [1, 2]},
    )
    assert (cells["status"] == "ok").sum() == 8
    assert len(log.read_text().split()) == 2  # d = 1 and d = 2, each once


@pytest.mark.slow
def test_each_problem_is_built_once_per_worker_process(tmp_path):
    log = tmp_path / "built.log"
    cells = sweep(
        tmp_path / "run",
        estimators="reinforce,reinforce_loo,gumbel_softmax",
        problems="counting_toy",
        samples=[2, 3, 4],
        plugins=[PLUGIN],
        settings={"log": [str(log)]},
        executor="process",
        workers=2,
    )
    assert (cells["status"] == "ok").all() and len(cells) == 9
    pids = log.read_text().split()
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)


@pytest.mark.slow
def test_expensive_construction_happens_in_the_cell_under_its_timeout(tmp_path):
    """Validation builds the VAE without pretraining; the pretraining itself runs in the
    cell and is stopped by --cell-timeout (it used to block the up-front validation)."""
    cells = sweep(
        tmp_path / "run",
        estimators="reinforce",
        problems="bernoulli_vae",
        settings={"pretrain_steps": [10**8]},
        cell_timeout=3.0,
    )
    assert cells["status"].tolist() == ["failed"]
    assert cells["reason"].iloc[0].startswith("timeout after 3 s")
