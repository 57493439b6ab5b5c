"""Analysis ergonomics: ``bench.load`` (every option its own column), ``bench table`` (the
paper's summary tables) and ``bench list``'s cost and reference per estimator."""

from __future__ import annotations

import contextlib
import json
import shutil

import pandas as pd
import pytest

import bench
from bench.cli import main
from bench.report.tables import measure, option_columns, paper_table
from estimators import ESTIMATORS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tables") / "run"
    bench.run_sweep(
        "reinforce,gumbel_softmax",
        "bernoulli_toy,gaussian_quadratic",
        samples=[2],
        repeats=60,
        settings={"tau": [0.5, 1.0]},
        bootstrap=20,
        out=out,
        progress=False,
    )
    return out


def test_load_gives_every_option_its_own_column_next_to_its_json(run_dir):
    cells = bench.load(run_dir)
    columns = list(cells.columns)
    at = columns.index("estimator_options")
    assert columns[at + 1] == "tau"
    assert set(columns[columns.index("problem_options") + 1 : at - 1]) == {
        "theta",
        "t",
        "d",
        "mu",
        "sigma",
        "k",
    }
    gumbel = cells[cells["estimator"] == "gumbel_softmax"]
    assert sorted(gumbel["tau"].dropna().unique()) == [0.5, 1.0]
    assert cells.loc[cells["estimator"] == "reinforce", "tau"].isna().all()
    rows = gumbel[gumbel["problem"] == "bernoulli_toy"][["estimator", "tau", "n_samples"]]
    assert not rows.duplicated().any()  # rows are told apart by their own columns
    for text, tau in zip(gumbel["estimator_options"], gumbel["tau"], strict=True):
        assert json.loads(text)["tau"] == tau


def test_option_names_that_collide_get_a_prefix():
    cells = pd.DataFrame(
        {
            "problem_options": [json.dumps({"seed": 3, "beta": 1.0})],
            "estimator_options": [json.dumps({"beta": 0.5, "tau": 2.0})],
            "seed": [0],
        }
    )
    table = option_columns(cells)
    assert list(table.columns) == [
        "problem_options",
        "problem_seed",
        "problem_beta",
        "estimator_options",
        "estimator_beta",
        "tau",
        "seed",
    ]
    assert table.loc[0, "problem_seed"] == 3 and table.loc[0, "estimator_beta"] == 0.5


def test_load_of_a_directory_without_cells_says_why(tmp_path):
    with pytest.raises(ValueError, match=r"no cells\.parquet"):
        bench.load(tmp_path)


def test_a_damaged_cells_table_is_one_line_naming_it_and_the_remedy(run_dir, tmp_path, capsys):
    damaged = tmp_path / "run"
    shutil.copytree(run_dir, damaged)
    table = damaged / "cells.parquet"
    table.write_bytes(table.read_bytes()[:300])
    with pytest.raises(ValueError) as error:
        bench.load(damaged)
    message = str(error.value)
    assert message.startswith(f"{table}: cannot be read as a Parquet table, it is damaged (")
    assert message.endswith(f"it rebuilds cells.parquet from {damaged / 'cells'}/")
    assert "\n" not in message
    assert main(["table", str(damaged)]) == 2
    assert capsys.readouterr().err == f"bench table: error: {message}\n"
    shutil.rmtree(damaged / "cells")
    with pytest.raises(ValueError, match=r"it is damaged .*; restore it from a copy$"):
        bench.load(damaged)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ((0.5, 0.4, 0.6, 3, "markdown"), "0.500 [0.400, 0.600]"),
        ((9.996e-5, 9.0e-5, 1.1e-4, 3, "markdown"), "1.00 [0.90, 1.10] ×10^-4"),
        ((123456.0, 100000.0, 150000.0, 2, "markdown"), "1.2 [1.0, 1.5] ×10^5"),
        ((2.5e-4, 2.0e-4, 3.0e-4, 2, "latex"), "$2.5 [2.0, 3.0] \\times 10^{-4}$"),
        ((0.0123, float("nan"), float("nan"), 3, "markdown"), "0.0123"),
        ((float("nan"), None, None, 3, "markdown"), "–"),
    ],
)
def test_a_number_and_its_interval_share_digits_and_power(args, text):
    assert measure(*args) == text


def test_paper_table_has_a_block_per_problem_and_a_row_per_cell(run_dir):
    cells = bench.load(run_dir)
    text = paper_table(cells, "markdown")
    assert text.count("### ") == 2 and "### bernoulli_toy" in text
    rows = [line for line in text.splitlines() if line.startswith("| gumbel_softmax (tau=")]
    assert len(rows) == 2  # one per tau, on bernoulli_toy only
    latex = paper_table(cells, "latex", digits=2)
    assert latex.count("\\midrule") == 2 and "gumbel\\_softmax (tau=0.5)" in latex
    assert latex.rstrip().endswith("\\end{tabular}")


def test_bench_table_command(run_dir, capsys, tmp_path):
    assert main(["table", str(run_dir), "--format", "latex", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "\\toprule" in out and out.count(" & 2 & ") == 4
    target = tmp_path / "t" / "table.md"
    assert (
        main(["table", str(run_dir), "--problem", "gaussian_quadratic", "--out", str(target)]) == 0
    )
    assert "### gaussian_quadratic" in target.read_text()
    assert "bernoulli_toy" not in target.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "html"], "invalid choice"),
        (["--problem", "nope"], "invalid --problem nope"),
        (["--digits", "0"], "invalid --digits 0"),
        (["--samples", "7"], "no measured cell"),
    ],
)
def test_bench_table_refuses_bad_input_in_one_line(run_dir, capsys, args, message):
    assert main(["table", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bench_list_shows_cost_and_reference_of_every_estimator(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    glance = out[out.index("Estimators at a glance") : out.index("Applicable pairs")]
    for name, est in ESTIMATORS.items():
        line = next(line for line in glance.splitlines() if line.split()[:1] == [name])
        assert est.cost_formula in line and est.reference() in line


def _summary_row(**kw) -> dict:
    return {"status": "ok", "problem": "bernoulli_toy", "estimator": "gumbel_softmax",
            "n_samples": 2, "truth": "closed_form", "unbiased": False, "bias": 0.1,
            "bias_l2": 0.1, "bias_p_value": 0.5, "variance_trace": 1.0, "mse": 1.0,
            "mse_ci_low": 0.9, "mse_ci_high": 1.1, "time_per_estimate_s": 1e-3,
            "problem_options": json.dumps({"d": 1, "t": 0.45}),
            "estimator_options": json.dumps({"tau": 1.0})} | kw


def test_summary_blocks_show_the_problem_options_that_vary():
    from bench.report.summary import summary_table

    rows = [_summary_row(problem_options=json.dumps({"d": d, "t": 0.45})) for d in (1, 2)]
    rows.append(_summary_row(problem="gaussian_quadratic", estimator="reinforce",
                             problem_options=json.dumps({"d": 1}), estimator_options="{}"))
    lines = summary_table(pd.DataFrame(rows)).splitlines()
    assert "bernoulli_toy (d:1)" in lines and "bernoulli_toy (d:2)" in lines
    assert "gaussian_quadratic" in lines  # one configuration: nothing to tell apart
    assert not any("tau" in line for line in lines)  # the same tau everywhere: not shown


def test_summary_marks_declared_and_detected_bias():
    from bench.report.summary import summary_table

    rows = [_summary_row(estimator="a", unbiased=False, bias_p_value=0.5),
            _summary_row(estimator="b", unbiased=False, bias_p_value=1e-9),
            _summary_row(estimator="c", unbiased=True, bias_p_value=0.01),
            _summary_row(estimator="d", unbiased=True, bias_p_value=0.3)]
    lines = summary_table(pd.DataFrame(rows)).splitlines()
    flags = {line.split()[0]: line.split()[3] for line in lines if line.startswith("  ")
             and line.split()[0] in "abcd"}
    assert flags == {"a": "decl", "b": "decl+det", "c": "det!", "d": "-"}


def test_summary_marks_the_best_and_its_ties_per_problem_and_k():
    from bench.report.summary import best_marks

    block = pd.DataFrame([
        {"n_samples": 2, "mse": 1.0, "mse_ci_low": 0.9, "mse_ci_high": 1.1},
        {"n_samples": 2, "mse": 1.05, "mse_ci_low": 1.0, "mse_ci_high": 1.2},  # overlaps
        {"n_samples": 2, "mse": 2.0, "mse_ci_low": 1.8, "mse_ci_high": 2.2},  # resolved
        {"n_samples": 4, "mse": 3.0, "mse_ci_low": 2.0, "mse_ci_high": 4.0},  # its own K
    ])
    assert list(best_marks(block)) == ["*", "=", "", "*"]


def test_summary_rows_fit_120_columns_with_the_longest_names_and_options():
    from bench.report.summary import WIDTH, summary_table
    from problems import PROBLEMS

    longest = max(ESTIMATORS, key=len)
    problem = max(PROBLEMS, key=len)
    options = [json.dumps({"baseline": f"value_{t}_" * 5, "tau": t}) for t in (0.5, 1)]
    rows = [_summary_row(estimator=longest, problem=problem, estimator_options=o,
                         problem_options=json.dumps({"alpha": "x" * 200, "n": n}),
                         bias=1.234567e-17, mse=1.234567e-13, variance_trace=9.87654e12,
                         bias_p_value=1e-300, time_per_estimate_s=12.345)
            for o in options for n in (1, 2)]
    text = summary_table(pd.DataFrame(rows))
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert "…" in text  # abbreviated, and the rows still differ
    body = [line for line in text.splitlines() if line.startswith("  " + longest)]
    assert len(body) == 4 and len(set(body)) == 2  # two blocks (n), two rows told apart


def test_table_help_prints_a_single_percent(capsys):
    with contextlib.suppress(SystemExit):
        main(["table", "--help"])
    out = capsys.readouterr().out
    assert "95% intervals" in " ".join(out.split()) and "%%" not in out


def test_paper_table_bias_column_is_the_bias_with_its_own_interval(run_dir):
    """The bias column is ``bias`` (sqrt of the unbiased squared bias) with the interval for
    the same quantity: every printed interval contains its number; and the table says why
    an mse can be below its variance."""
    from bench.report.tables import NOTE

    text = paper_table(bench.load(run_dir), "markdown", 6)
    assert NOTE in text
    cells = bench.load(run_dir)
    ok = cells[cells["status"] == "ok"]
    for name in ("bias", "variance_trace", "mse"):
        assert (ok[f"{name}_ci_low"] <= ok[name]).all()
        assert (ok[name] <= ok[f"{name}_ci_high"]).all()
    for row in text.splitlines():
        if row.startswith("| ") and "[" in row:
            for cell in row.split(" | ")[2:5]:
                if "[" not in cell:
                    continue
                value, rest = cell.split(" [")
                low, high = (float(v) for v in rest.split("]")[0].split(", "))
                assert low <= float(value.split()[0]) <= high, row
