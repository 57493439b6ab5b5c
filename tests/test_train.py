"""Training runs: the loop lowers the loss, shares initialization and minibatches, and writes
a tidy, complete train.parquet."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cli import main as bench_main
from bench.cli import train as train_cli
from bench.schema import TRAIN
from bench.training.loop import eval_steps
from bench.training.train import make_spec, run_training

OPTIONS = ["latents=4", "batch=32"]


def test_unbiased_training_lowers_the_test_nelbo(tmp_path: Path) -> None:
    spec = make_spec(
        "bernoulli_vae", "reinforce_loo", OPTIONS, steps=150, eval_every=50, lr=0.01,
        n_samples=4, variance_repeats=50,
    )
    table = run_training(spec, tmp_path / "run", progress=False)
    test = table[table["metric"] == "test_nelbo"].set_index("step")["value"]
    assert list(test.index) == [0, 50, 100, 150]
    assert test[150] < test[0] - 1.0, test.to_dict()
    train_loss = table[table["metric"] == "train_loss"].set_index("step")["value"]
    assert train_loss[150] < train_loss[50]


def test_table_columns_and_shared_start(tmp_path: Path) -> None:
    spec = make_spec(
        "bernoulli_vae", "reinforce_loo,gumbel_softmax", [*OPTIONS, "tau=0.5", "iw_samples=8"],
        steps=6, eval_every=4, n_samples=2, variance_repeats=10, seed=3,
    )
    out = tmp_path / "curves"
    table = run_training(spec, out, progress=False)
    on_disk = pd.read_parquet(out / "train.parquet")
    assert list(on_disk.columns) == TRAIN.names
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())
    assert set(table["metric"]) == {"train_loss", "test_nelbo", "test_iwae", "variance_trace"}
    assert sorted(set(table["step"])) == [0, 4, 6] == eval_steps(6, 4)
    assert set(table["estimator"]) == {"reinforce_loo", "gumbel_softmax"}
    assert table["run_id"].eq("curves").all() and table["seed"].eq(3).all()
    assert json.loads(table["problem_options"].iloc[0])["latents"] == 4
    options = table.groupby("estimator")["estimator_options"].first()
    assert json.loads(options["gumbel_softmax"]) == {"tau": 0.5}
    # same initialization: identical test metrics at step 0 for every estimator
    start = table[(table["step"] == 0) & (table["metric"] == "test_nelbo")]["value"]
    assert start.nunique() == 1
    assert (table.groupby("estimator")["wall_s"].max() > 0).all()
    assert table[table["step"] == 0]["wall_s"].eq(0).all()


def test_runs_are_reproducible(tmp_path: Path) -> None:
    spec = make_spec("categorical_vae", "reinforce", ["batch=8"], steps=5, eval_every=5,
                     n_samples=2, variance_repeats=4)
    first = run_training(spec, tmp_path / "a", progress=False)
    second = run_training(spec, tmp_path / "b", progress=False)
    assert first["value"].tolist() == second["value"].tolist()


@pytest.mark.parametrize(
    ("estimator", "settings", "kwargs", "message"),
    [
        ("nope", [], {}, "unknown estimator 'nope'"),
        ("reparam", [], {}, "reparam requires rsample"),
        ("reinforce_loo", [], {"n_samples": 1}, "reinforce_loo needs K >= 2"),
        ("reinforce", ["colour=red"], {}, "unknown option 'colour'"),
        ("reinforce", ["latents=0"], {}, "invalid option latents='0'"),
        ("reinforce", ["latents=2", "latents=3"], {}, "--set latents is given more than once"),
        ("reinforce", [], {"steps": 0}, "invalid --steps 0"),
        ("reinforce", [], {"variance_repeats": 1}, "invalid --variance-repeats 1"),
        ("reinforce", [], {"device": "tpu"}, "device"),
    ],
)
def test_invalid_input(estimator: str, settings: list, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_spec("bernoulli_vae", estimator, settings, **kwargs)


def test_all_skips_what_does_not_apply() -> None:
    spec = make_spec("bernoulli_vae", "all", n_samples=1)
    names = [name for name, _ in spec.estimators]
    assert "reparam" not in names and "reinforce_loo" not in names and "reinforce" in names
    skipped = dict(spec.skipped)
    assert {"reparam", "reinforce_loo"} <= set(skipped) and not set(skipped) & set(names)
    assert "rsample" in skipped["reparam"] and "K >= 2" in skipped["reinforce_loo"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="bench")
    train_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([
        "train", "--problem", "bernoulli_vae", "--estimator", "straight_through",
        "--steps", "3", "--eval-every", "2", "--variance-repeats", "5", "--set", "latents=3",
        "--out", str(tmp_path / "cli"), "--no-progress",
    ])
    assert args.handler(args) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "cli" / "train.parquet")) == 3 * 2 + 2


def test_cli_refuses_an_out_below_a_file_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "file").touch()
    assert bench_main(["train", "--problem", "bernoulli_vae", "--out",
                       str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "file exists and is not a directory" in err and len(err.splitlines()) == 1


def test_variance_is_measured_with_the_state_warmed_on_the_evaluated_batch() -> None:
    """Issue 16 item 13: a moving-average baseline learned on training minibatches is
    warmed on the evaluated minibatch before its variance is measured, from its training
    state, on a copy that training never sees."""
    import torch

    from bench.cell.estimate import gradient_variance
    from bench.training.loop import TrainRun
    from estimators import get_estimator
    from problems import get_problem

    spec = make_spec("bernoulli_vae", "reinforce_ema", OPTIONS, steps=1, eval_every=1,
                     n_samples=2, variance_repeats=200)
    problem = get_problem("bernoulli_vae")(spec.problem_options)
    estimator = get_estimator("reinforce_ema")(dict(spec.estimators[0][1]))
    train = {k: v.detach().unsqueeze(0).clone().requires_grad_(True)
             for k, v in problem.train_params().items()}
    point = problem.load_train_params({k: v[0].detach() for k, v in train.items()})
    torch.manual_seed(0)
    good, _ = estimator.warm_up(problem, point, spec.n_samples)  # as a bench run cell
    stale = {"baseline": good["baseline"] + 5.0}  # learned on other minibatches
    measured = {}
    for name, state in (("good", good), ("stale", stale)):
        torch.manual_seed(1)
        run = TrainRun(problem, estimator, spec.n_samples, train,
                       torch.optim.Adam(train.values()), state, torch.Generator())
        measured[name] = run.measure(spec.variance_repeats)["variance_trace"]
    torch.manual_seed(1)
    raw = gradient_variance(problem, estimator, point, spec.n_samples, 200, stale)
    assert raw > 100 * measured["good"]  # what the variance curve used to show
    assert measured["stale"] == pytest.approx(measured["good"], rel=0.02)
    assert float(stale["baseline"][0]) == pytest.approx(float(good["baseline"][0]) + 5.0)


def test_learned_control_variates_train_alongside_the_model(monkeypatch) -> None:
    """relax and tuned rebar are set up once and their own parameters take a step at every
    model step (estimators.base, Estimator.backward)."""
    import bench.training.train as training
    from problems import get_problem

    original, built = training.estimator_class, []

    def recording(name):
        def make(options):
            built.append(original(name)(options))
            return built[-1]

        return make

    spec = make_spec("bernoulli_vae", "relax", ["latents=3", "batch=4"], steps=3, eval_every=3,
                     n_samples=2, variance_repeats=3)
    monkeypatch.setattr(training, "estimator_class", recording)
    for name, options in [("relax", {}), ("rebar", {"tune": True})]:
        problem = get_problem("bernoulli_vae")({"latents": 3, "batch": 4})
        untrained = original(name)(options)
        torch.manual_seed(spec.seed)  # as train_one seeds before the set-up
        untrained.setup(problem, problem.init_params())
        rows = training.train_one(problem, name, untrained.option_values, spec, progress=False)
        assert {row["step"] for row in rows} == {0, 3}
        trained = built[-1].parameters()
        assert trained and all(t.requires_grad for t in trained)
        assert any(not torch.equal(a, b) for a, b in
                   zip(trained, untrained.parameters(), strict=True)), f"{name} did not train"
def test_seeds_train_every_estimator_once_per_seed(tmp_path: Path) -> None:
    spec = make_spec("bernoulli_vae", "reinforce", ["latents=3", "batch=8"], steps=2,
                     eval_every=2, n_samples=2, variance_repeats=3, seed=5, seeds=2)
    assert spec.seeds == (5, 6) and spec.seed == 5
    table = run_training(spec, tmp_path / "run", progress=False)
    assert sorted(set(table["seed"])) == [5, 6]
    loss = table[table["metric"] == "train_loss"].set_index(["seed", "step"])["value"]
    assert loss[5, 2] != loss[6, 2]  # different minibatches and noise
    alone = run_training(replace(spec, seeds=(6,)), tmp_path / "alone", progress=False)
    assert (alone["value"].tolist()
            == table[table["seed"] == 6]["value"].tolist())  # a seed's run is its own
    assert make_spec("bernoulli_vae", "reinforce", seeds=[3, 9]).seeds == (3, 9)
    for bad, message in ((0, "invalid --seeds 0"), ([1, 1], "distinct")):
        with pytest.raises(ValueError, match=message):
            make_spec("bernoulli_vae", "reinforce", seeds=bad)


def test_cli_seeds_as_a_count_or_a_list(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["train", "--problem", "bernoulli_vae", "--estimator", "reinforce", "--steps", "1",
              "--eval-every", "1", "--variance-repeats", "2", "--set", "latents=2",
              "--set", "batch=4", "--no-progress", "--threads", "1"]
    assert bench_main([*common, "--seeds", "2", "--seed", "4", "--out", str(tmp_path / "a")]) == 0
    assert "mean over 2 seeds" in capsys.readouterr().out
    assert set(pd.read_parquet(tmp_path / "a" / "train.parquet")["seed"]) == {4, 5}
    assert bench_main([*common, "--seeds", "7,2", "--out", str(tmp_path / "b")]) == 0
    assert set(pd.read_parquet(tmp_path / "b" / "train.parquet")["seed"]) == {7, 2}
    assert bench_main([*common, "--seeds", "0", "--out", str(tmp_path / "c")]) == 2
    assert "--seeds" in capsys.readouterr().err
