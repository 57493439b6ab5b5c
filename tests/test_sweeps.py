"""Sweeps at scale: executors agree, a SIGKILLed sweep resumes without losing or redoing
cells, failing cells become rows, and bad input is refused with nothing written.

Test-only problems (a cost that raises, returns NaN or hangs; a data file) come from
``tests/sweep_plugin.py`` through ``--plugin``, so that worker processes and Ray tasks
build their registries exactly as they would with a user's own problems.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.cli import main
from bench.sweep.executors import RAY_INSTALL_HINT, cpu_count
from bench.sweep.run import run_sweep
from bench.sweep.spec import SweepSpec, expand
from bench.sweep.store import CONFIG_METADATA

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.sweep_plugin"

#: columns that describe when, where and how fast a cell ran, not what it measured
CIRCUMSTANCES = {
    "run_id", "created_utc", "git_commit", "code_hash", "package_version", "torch_version",
    "python_version", "device_name", "threads", "omp_wait_policy", "hostname",
    "time_per_estimate_s", "time_iqr_s", "time_n", "estimates_per_s", "measure_s", "stats_s",
    "peak_memory_bytes", "cell_s",
}

#: one cell of each failure kind next to cells that succeed
FAILING_SWEEP = {
    "estimators": "reinforce",
    "problems": "misbehaving_toy,bernoulli_toy,gaussian_quadratic",
    "samples": [4],
    "repeats": 50,
    "settings": ["mode=ok,raise,nan,hang"],
    "bootstrap": 20,
    "progress": False,
    "plugins": [PLUGIN],
    "cell_timeout": 4.0,
}
EXPECTED = {
    ("bernoulli_toy", "ok"): ("ok", None),
    ("gaussian_quadratic", "ok"): ("ok", None),
    ("misbehaving_toy", "ok"): ("ok", None),
    ("misbehaving_toy", "raise"): ("failed", "RuntimeError: deliberate failure"),
    ("misbehaving_toy", "nan"): (
        "failed", "FloatingPointError: non-finite gradient estimate in 50 of 50 repeats"),
    ("misbehaving_toy", "hang"): ("failed", "timeout after 4 s"),
}


def measured(table: pd.DataFrame) -> pd.DataFrame:
    """What cells measured, in a fixed order: the part that must not depend on the executor."""
    keep = [c for c in table.columns if c not in CIRCUMSTANCES]
    order = [c for c in ("cell_key", "param", "index") if c in keep]
    return table[keep].sort_values(order).reset_index(drop=True)


def outcome(cells: pd.DataFrame) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {
        (row.problem, json.loads(row.problem_options).get("mode", "ok")):
            (row.status, row.reason if isinstance(row.reason, str) else None)
        for row in cells.itertuples()
    }


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def source_env() -> dict[str, str]:
    """The environment with this checkout importable (also when it is not installed)."""
    path = os.environ.get("PYTHONPATH")
    return os.environ | {"PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


@pytest.fixture(scope="module")
def local_failures(tmp_path_factory) -> Path:
    """The run directory of ``FAILING_SWEEP`` on the local executor, the reference."""
    out = tmp_path_factory.mktemp("local") / "run"
    run_sweep(**FAILING_SWEEP, out=out)
    return out


def assert_same_tables(out: Path, reference: Path) -> None:
    """Cells and coords of two runs agree exactly, timings and environment aside."""
    for name in ("cells.parquet", "coords.parquet"):
        got, want = (pd.read_parquet(d / name) for d in (out, reference))
        assert len(want) > 0
        pd.testing.assert_frame_equal(measured(got), measured(want), check_exact=True)


#: the wait policy of worker processes and of a `bench` command (bench.threads)
POLICY = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")


def test_failures_become_rows_and_the_rest_succeeds(local_failures):
    cells = pd.read_parquet(local_failures / "cells.parquet")
    assert outcome(cells) == EXPECTED
    # --cell-timeout isolates local cells in a child process: one thread, the wait policy
    assert set(cells["threads"]) == {1} and set(cells["omp_wait_policy"]) == {POLICY}
    ok = cells[cells["status"] == "ok"]
    assert ok["bias_l2"].notna().all() and (ok["variance_trace"] > 0).all()


def test_process_pool_gives_the_local_table(local_failures, tmp_path):
    cells = run_sweep(**FAILING_SWEEP, out=tmp_path, executor="process", workers=2)
    assert outcome(cells) == EXPECTED
    assert_same_tables(tmp_path, local_failures)
    assert set(cells["threads"]) == {max(1, cpu_count() // 2)}
    assert set(cells["omp_wait_policy"]) == {POLICY}


def test_dead_worker_is_a_failed_row_and_is_replaced(tmp_path):
    sweep = FAILING_SWEEP | {"problems": "misbehaving_toy", "settings": ["mode=crash,ok"]}
    cells = run_sweep(**sweep, out=tmp_path, executor="process", workers=1)
    assert outcome(cells) == {
        ("misbehaving_toy", "crash"):
            ("failed", f"worker process died (exit code -{signal.SIGKILL.value})"),
        ("misbehaving_toy", "ok"): ("ok", None),
    }


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install -e '.[ray]')")
def test_ray_gives_the_local_table(local_failures, tmp_path, monkeypatch):
    # a local Ray instance's workers inherit the driver's environment: make the plugin
    # module importable there as it would be on a cluster where the package is installed
    monkeypatch.setenv("PYTHONPATH", source_env()["PYTHONPATH"])
    started = time.perf_counter()
    cells = run_sweep(**FAILING_SWEEP, out=tmp_path, executor="ray")
    print(f"ray sweep of {len(cells)} cells: {time.perf_counter() - started:.1f} s")
    assert outcome(cells) == EXPECTED
    assert_same_tables(tmp_path, local_failures)
    assert set(cells["threads"]) == {1}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("executor", ["local", "process"])
def test_sigkill_then_resume_loses_and_redoes_nothing(tmp_path, executor):
    out = tmp_path / "run"
    args = ["run", "--problem", "bernoulli_toy,gaussian_quadratic",
            "--estimator", "reinforce,reinforce_loo", "--samples", "2,3,4,5",
            "--repeats", "50", "--bootstrap", "0", "--out", str(out), "--no-progress",
            "--executor", executor]
    if executor == "process":
        args += ["--workers", "2"]
    planned = {c.key for c in expand(SweepSpec(
        estimators=("reinforce", "reinforce_loo"), problems=("bernoulli_toy", "gaussian_quadratic"),
        samples=(2, 3, 4, 5), repeats=50, n_bootstrap=0))}
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, env=source_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((out / "cells").glob("*.parquet"))) < 4:
        assert proc.poll() is None and time.monotonic() < deadline, "sweep ended or stalled"
        time.sleep(0.02)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    survivors = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
                 for p in (out / "cells").glob("*.parquet")}
    assert 4 <= len(survivors) < len(planned), "the kill came too late to test anything"
    assert not (out / "cells.parquet").exists()
    created = {Path(name).stem: pq.read_table(out / "cells" / name)["created_utc"][0].as_py()
               for name in survivors}
    gone = time.monotonic() + 10  # the kernel kills orphaned workers (PR_SET_PDEATHSIG)
    while any(_alive(w) for w in workers) and time.monotonic() < gone:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers)

    assert main(args) == 0
    cells = pd.read_parquet(out / "cells.parquet")
    assert sorted(cells["cell_key"]) == sorted(planned)  # every cell, exactly once
    assert (cells["status"] == "ok").all()
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (out / "cells").glob("*.parquet") if p.name in survivors} == survivors
    kept = cells[cells["cell_key"].isin(created)]
    assert dict(zip(kept["cell_key"], kept["created_utc"], strict=True)) == created
    coords = pd.read_parquet(out / "coords.parquet")
    assert len(coords) == cells["grad_dim"].sum()
    invocations = json.loads((out / "run.json").read_text())["invocations"]
    assert [i["already_finished"] for i in invocations] == [0, len(survivors)]


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    """A finished run directory that bad input must leave byte-identical."""
    out = tmp_path_factory.mktemp("existing") / "run"
    assert main(["run", "--problem", "bernoulli_toy", "--estimator", "reinforce",
                 "--samples", "2", "--repeats", "20", "--bootstrap", "0", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def _data_file(tmp: Path, text: str | None) -> str:
    path = tmp / "data.txt"
    if text is not None:
        path.write_text(text)
    return str(path)


BAD_INPUT = [
    (["--estimator", "nope"], "unknown estimator 'nope'; valid estimators: all, reinforce"),
    (["--problem", "nope"], "unknown problem 'nope'; valid problems: all, gaussian_quadratic"),
    (["--set", "tua=1"], "unknown option 'tua' for the selected problems and estimators; valid"),
    (["--estimator", "gumbel_softmax", "--set", "tau=0"],
     "invalid option tau='0' for estimator 'gumbel_softmax': expected float > 0"),
    (["--samples", "0"], "invalid --samples [0]: every K must be >= 1"),
    (["--estimator", "reinforce_loo", "--samples", "1"],
     "invalid --samples [1]: reinforce_loo needs K >= 2, got K=1"),
    (["--repeats", "1"], "invalid --repeats 1: R must be >= 2"),
    (["--problem", "bernoulli_toy", "--set", "d=0"],
     "invalid option d='0' for problem 'bernoulli_toy': expected int >= 1"),
    (["--cell-timeout", "0"], "invalid --cell-timeout 0.0: expected seconds > 0"),
    (["--executor", "process", "--workers", "0"], "invalid --workers 0: expected 1.."),
    (["--plugin", "no_such_plugin"], "--plugin no_such_plugin: cannot import it"),
    (["--plugin", PLUGIN, "--problem", "data_file_toy", "--set", "data={missing}"],
     "problem 'data_file_toy': {missing}: no such file (expected numbers in [0, 1])"),
    (["--plugin", PLUGIN, "--problem", "data_file_toy", "--set", "data={malformed}"],
     "{malformed}: malformed, expected whitespace-separated numbers"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    existing, tmp_path, capsys, args, message
):
    files = {"missing": _data_file(tmp_path / "a", None),
             "malformed": _data_file(tmp_path, "0.5 zero.7\n")}
    args = [a.format(**files) for a in args]
    message = message.format(**files)
    before = tree_digest(existing)
    capsys.readouterr()
    samples = [] if "--samples" in args else ["--samples", "3"]
    assert main(["run", "--out", str(existing), *samples, "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert tree_digest(existing) == before


def test_missing_ray_says_how_to_install(existing, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without ray sees
    before = tree_digest(existing)
    assert main(["run", "--out", str(existing), "--executor", "ray", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert RAY_INSTALL_HINT in err and len(err.splitlines()) == 1
    assert tree_digest(existing) == before


def _rewrite_cell(out: Path, change) -> None:
    """Rewrite the one cell file of ``out`` through ``change(table) -> table``."""
    (path,) = (out / "cells").glob("*.parquet")
    pq.write_table(change(pq.read_table(path)), path)


def _other_commit(table):
    column = table.schema.get_field_index("git_commit")
    return table.set_column(column, "git_commit", [["0" * 40]])


def _other_config(table):
    config = json.loads(table.schema.metadata[CONFIG_METADATA])
    config["n_repeats"] = 21
    return table.replace_schema_metadata({CONFIG_METADATA: json.dumps(config).encode()})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda out: (out / "run.json").write_text("{not json"),
         "cannot read run.json (JSONDecodeError"),
        (lambda out: (shutil.rmtree(out), out.write_text("a file")),
         "exists and is not a directory"),
        (lambda out: _rewrite_cell(out, _other_commit),
         "holds cells made by other code (git_commit=0000000000000000000000000000000000000000"),
        (lambda out: _rewrite_cell(out, _other_config),
         "was made with configuration"),
    ],
    ids=["malformed-run-json", "out-is-a-file", "other-code", "other-config"],
)
def test_unusable_run_directory_is_refused_untouched(existing, tmp_path, capsys, damage, message):
    out = tmp_path / "run"
    shutil.copytree(existing, out)
    damage(out)
    before = tree_digest(out) if out.is_dir() else out.read_bytes()
    capsys.readouterr()
    assert main(["run", "--problem", "bernoulli_toy", "--estimator", "reinforce",
                 "--samples", "2,3", "--repeats", "20", "--bootstrap", "0", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert (tree_digest(out) if out.is_dir() else out.read_bytes()) == before


def test_allow_code_change_adds_cells_made_by_this_code(existing, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(existing, out)
    _rewrite_cell(out, _other_commit)
    args = ["run", "--problem", "bernoulli_toy", "--estimator", "reinforce", "--samples", "2,3",
            "--repeats", "20", "--bootstrap", "0", "--out", str(out), "--no-progress"]
    assert main([*args, "--allow-code-change"]) == 0
    cells = pd.read_parquet(out / "cells.parquet")
    assert len(cells) == 2 and cells["git_commit"].nunique() == 2


def test_a_dirty_tree_at_the_same_commit_resumes(existing, tmp_path):
    """A cell recorded as ``+dirty`` (a README edited mid-run) against a clean checkout of the
    same commit, or the reverse, with the same code_hash: the run resumes without
    --allow-code-change, keeping the cell."""
    from bench.env import git_commit

    out = tmp_path / "run"
    shutil.copytree(existing, out)
    now = git_commit()
    other = now.removesuffix("+dirty") if now.endswith("+dirty") else now + "+dirty"

    def toggled(table):
        column = table.schema.get_field_index("git_commit")
        return table.set_column(column, "git_commit", [[other]])

    _rewrite_cell(out, toggled)
    assert main(["run", "--problem", "bernoulli_toy", "--estimator", "reinforce",
                 "--samples", "2,3", "--repeats", "20", "--bootstrap", "0", "--out", str(out),
                 "--no-progress"]) == 0
    cells = pd.read_parquet(out / "cells.parquet")
    assert sorted(cells["n_samples"]) == [2, 3]
    assert other in set(cells["git_commit"])  # the stored cell was kept, not redone


def test_retry_failed_reruns_only_failed_cells(tmp_path):
    sweep = FAILING_SWEEP | {"problems": "misbehaving_toy", "settings": ["mode=ok,raise"],
                             "cell_timeout": None}

    def stamps() -> dict[str, int]:
        return {p.stem: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.parquet")}

    first = run_sweep(**sweep, out=tmp_path)
    assert sorted(first["status"]) == ["failed", "ok"]
    failed = first.loc[first["status"] == "failed", "cell_key"].item()
    before = stamps()
    run_sweep(**sweep, out=tmp_path)
    assert stamps() == before
    run_sweep(**sweep, out=tmp_path, retry_failed=True)
    after = stamps()
    assert after[failed] != before[failed]
    assert {k: v for k, v in after.items() if k != failed} == {
        k: v for k, v in before.items() if k != failed}


def _gathering_wait(monkeypatch, limit_s: float) -> None:
    """Make the process pool's driver slow: each wait returns only once every worker has
    something to say (or one died), so that several workers become idle in one round, the
    schedule under which an idle worker used to be neither given a cell nor released. The
    executor must finish under any schedule; ``limit_s`` turns a hang into a failure."""
    from multiprocessing.connection import Connection
    from multiprocessing.connection import wait as real_wait

    from bench.sweep.executors import process

    deadline = time.monotonic() + limit_s

    def gathering(objects, timeout=None):
        conns = [o for o in objects if isinstance(o, Connection)]
        sentinels = [o for o in objects if not isinstance(o, Connection)]
        stop = deadline if timeout is None else min(deadline, time.monotonic() + timeout)
        while True:
            ready = real_wait(objects, max(0.0, min(0.05, stop - time.monotonic())))
            if any(s in ready for s in sentinels) or all(c.poll() for c in conns):
                return ready
            if time.monotonic() >= stop:
                assert time.monotonic() < deadline, "the process pool hangs after its last cell"
                return ready

    monkeypatch.setattr(process, "wait", gathering)


@pytest.mark.parametrize(("workers", "n_cells"), [(2, 3), (3, 1)])
def test_process_pool_ends_after_its_last_cell(tmp_path, monkeypatch, workers, n_cells):
    _gathering_wait(monkeypatch, limit_s=120)
    cells = run_sweep(estimators="reinforce", problems="bernoulli_toy",
                      samples=list(range(1, n_cells + 1)), repeats=20, bootstrap=0,
                      progress=False, out=tmp_path, executor="process", workers=workers)
    assert len(cells) == n_cells and (cells["status"] == "ok").all()


def _bench(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, env=source_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_cell_that_kills_the_local_process_becomes_a_failed_row(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--plugin", PLUGIN, "--problem", "misbehaving_toy", "--set", "mode=crash,ok",
            "--estimator", "reinforce", "--samples", "2", "--repeats", "20", "--bootstrap", "0",
            "--out", str(out), "--no-progress"]
    first = _bench(args)
    first.communicate(timeout=300)
    assert first.returncode == -signal.SIGKILL  # the cell killed the bench process itself
    (claim,) = (out / "claims").glob("*.json")
    assert json.loads(claim.read_text())["in_process"] is True  # it was recorded in flight

    assert main(args) == 1  # the next invocation runs it alone, sees it die, and goes on
    cells = pd.read_parquet(out / "cells.parquet")
    outcomes = outcome(cells)
    assert outcomes[("misbehaving_toy", "ok")] == ("ok", None)
    status, reason = outcomes[("misbehaving_toy", "crash")]
    assert status == "failed" and reason.startswith(
        f"worker process died (exit code -{signal.SIGKILL.value}); it had also ended bench "
        f"process {first.pid} on ")
    assert not (out / "claims").exists()
    assert main(args) == 1  # and it stays a failed row: no third death
    assert len(pd.read_parquet(out / "cells.parquet")) == 2


def test_concurrent_invocations_share_the_cells_and_all_are_recorded(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--problem", "bernoulli_toy,gaussian_quadratic", "--estimator",
            "reinforce,reinforce_loo", "--samples", "2,3,4", "--repeats", "2000",
            "--bootstrap", "0", "--out", str(out), "--no-progress"]
    runs = [_bench(args) for _ in range(4)]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, errors
    invocations = json.loads((out / "run.json").read_text())["invocations"]
    assert len(invocations) == 4
    assert all("finished_utc" in entry for entry in invocations)
    cells = pd.read_parquet(out / "cells.parquet")
    assert len(cells) == 12 and cells["cell_key"].is_unique and (cells["status"] == "ok").all()
    # the local executor's thread policy, set by `bench` before it imported torch
    assert set(cells["threads"]) == {1} and set(cells["omp_wait_policy"]) == {POLICY}
    # no cell was computed twice: the invocations' own counts add up to the cells
    assert sum(entry["computed"] for entry in invocations) == 12
    assert len(pd.read_parquet(out / "coords.parquet")) == cells["grad_dim"].sum()
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock", "cells", "cells.parquet", "coords", "coords.parquet", "run.json"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _two_rows(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table]), path)


DAMAGE = {
    "truncated-coords": (lambda cell, coords: _truncate(coords), "coords/{key}.parquet is "
                         "unreadable"),
    "missing-coords": (lambda cell, coords: coords.unlink(), "coords/{key}.parquet is missing"),
    "torn-cell": (lambda cell, coords: cell.write_bytes(b"PAR1 torn"),
                  "cells/{key}.parquet is unreadable"),
    "two-row-cell": (lambda cell, coords: _two_rows(cell), "cells/{key}.parquet has 2 rows, "
                     "expected 1"),
    "short-coords": (lambda cell, coords: pq.write_table(pq.read_table(coords).slice(0, 0),
                                                         coords),
                     "coords/{key}.parquet has 0 rows, expected 1"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cell_is_recomputed_with_a_note(existing, tmp_path, capsys, damage):
    out = tmp_path / "run"
    shutil.copytree(existing, out)
    (cell,) = (out / "cells").glob("*.parquet")
    key = cell.stem
    change, note = DAMAGE[damage]
    change(cell, out / "coords" / f"{key}.parquet")
    capsys.readouterr()
    args = ["run", "--problem", "bernoulli_toy", "--estimator", "reinforce", "--samples", "2,3",
            "--repeats", "20", "--bootstrap", "0", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("note: cell")]
    assert line.startswith(f"note: cell {key}: {note.format(key=key)}"), err
    assert line.endswith("; recomputing it"), err
    cells = pd.read_parquet(out / "cells.parquet")
    assert len(cells) == 2 and (cells["status"] == "ok").all()
    assert len(pd.read_parquet(out / "coords.parquet")) == 2
    invocations = json.loads((out / "run.json").read_text())["invocations"]
    assert any(note.format(key=key) in n for n in invocations[-1]["notes"])
    assert invocations[-1]["computed"] == 2


def test_a_damaged_cell_of_another_sweep_is_left_out(existing, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(existing, out)
    (cell,) = (out / "cells").glob("*.parquet")
    (out / "coords" / cell.name).unlink()
    capsys.readouterr()
    assert main(["run", "--problem", "gaussian_quadratic", "--estimator", "reinforce",
                 "--samples", "2", "--repeats", "20", "--bootstrap", "0", "--out", str(out),
                 "--no-progress"]) == 0
    assert "left out of cells.parquet (not in this sweep)" in capsys.readouterr().err
    assert list(pd.read_parquet(out / "cells.parquet")["problem"]) == ["gaussian_quadratic"]


def test_temporary_files_of_killed_writes_are_removed(existing, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(existing, out)
    stale = [out / ".cells.parquet.0badc0de.tmp", out / ".run.json.12345678.tmp",
             out / "cells" / ".0123456789abcdef.parquet.deadbeef.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    keep = out / ".notes.txt.tmp"  # not one of a run directory's own files
    keep.write_text("mine")
    capsys.readouterr()
    assert main(["run", "--problem", "bernoulli_toy", "--estimator", "reinforce", "--samples",
                 "2", "--repeats", "20", "--bootstrap", "0", "--out", str(out),
                 "--no-progress"]) == 0
    assert "note: removed 3 temporary file(s) of writes that were killed" in \
        capsys.readouterr().err
    assert not any(path.exists() for path in stale) and keep.exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install -e '.[ray]')")
@pytest.mark.parametrize(
    ("args", "message"),
    [(["--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: nothing answers at "
      "127.0.0.1:1"),
     (["--ray-address", "ray://127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
     (["--ray-address", "nowhere"], "invalid --ray-address nowhere: expected auto, HOST:PORT"),
     (["--device", "cpu:1"], "--device cpu:1 with --executor ray: a CPU cell runs on the CPUs "
      "Ray gives it")],
)
def test_an_unusable_ray_setting_is_one_line_within_seconds(tmp_path, capsys, args, message):
    started = time.perf_counter()
    capsys.readouterr()
    assert main(["run", "--problem", "bernoulli_toy", "--estimator", "reinforce", "--samples",
                 "2", "--repeats", "20", "--out", str(tmp_path / "run"), "--no-progress",
                 "--executor", "ray", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert time.perf_counter() - started < 60
    assert not (tmp_path / "run").exists()


def test_what_ray_writes_to_the_stderr_descriptor_is_dropped_on_failure_only(capfd):
    from bench.sweep.executors.ray import _quiet_stderr

    with pytest.raises(ConnectionError), _quiet_stderr():
        os.write(2, b"[C++] gcs_client.cc: Failed to get cluster ID\n")
        raise ConnectionError("no cluster")
    assert capfd.readouterr().err == ""
    with _quiet_stderr():
        os.write(2, b"a warning worth reading\n")
    assert capfd.readouterr().err == "a warning worth reading\n"
    os.write(2, b"after\n")  # the descriptor is restored
    assert capfd.readouterr().err == "after\n"


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install -e '.[ray]')")
def test_ray_logging_on_a_failed_connection_is_silenced(tmp_path, capfd, monkeypatch):
    # where something answers but is no Ray cluster (the quick TCP check passes), Ray's core
    # logs a line a second to the stderr descriptor for about 40 s before ray.init raises
    # (measured: 20 lines before the one-line error): that stand-in writes and raises at once
    import ray

    from bench.sweep.executors import ray as executor

    def failing_init(**kwargs):
        for _ in range(20):
            os.write(2, b"[W gcs_client.cc:210] Failed to get cluster ID from GCS server\n")
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")

    monkeypatch.setattr(executor, "check_reachable", lambda address: None)
    monkeypatch.setattr(ray, "init", failing_init)
    code = main(["run", "--problem", "bernoulli_toy", "--estimator", "reinforce", "--samples",
                 "2", "--repeats", "20", "--out", str(tmp_path / "run"), "--no-progress",
                 "--executor", "ray", "--ray-address", "10.255.255.1:6379"])
    err = capfd.readouterr().err.strip()
    assert code == 2
    assert err == ("bench run: error: --ray-address 10.255.255.1:6379: cannot start or join "
                   "Ray (Failed to connect to Ray cluster at 10.255.255.1:6379)"), err


def test_local_cells_run_on_one_thread_unless_told(tmp_path):
    import torch

    before = torch.get_num_threads()
    sweep = {"estimators": "reinforce", "problems": "bernoulli_toy", "samples": [2],
             "repeats": 20, "bootstrap": 0, "progress": False}
    assert set(run_sweep(**sweep, out=tmp_path / "a")["threads"]) == {1}
    assert set(run_sweep(**sweep, out=tmp_path / "b", threads=2)["threads"]) == {2}
    assert torch.get_num_threads() == before  # the driver's own setting is left as it was


def test_a_cell_another_invocation_finishes_after_planning_is_not_computed_again(
        tmp_path, monkeypatch):
    """Between planning (which cells are missing) and claiming them, another invocation
    may finish one; its file is then not the one seen at planning, so this invocation
    skips it. (Stamping the files after the executor opened saw such a file as the planned
    one and computed the cell again.)"""
    from bench.sweep.executors.local import LocalExecutor

    kwargs = dict(estimators="reinforce", problems="bernoulli_toy", samples=[2, 3],
                  repeats=50, bootstrap=0, progress=False)
    done = run_sweep(**kwargs, out=tmp_path / "other")
    first = done["cell_key"][0]
    out = tmp_path / "run"

    def open_while_another_finishes(self):
        out.mkdir(parents=True, exist_ok=True)
        for folder in ("cells", "coords"):
            (out / folder).mkdir(exist_ok=True)
            shutil.copy(tmp_path / "other" / folder / f"{first}.parquet",
                        out / folder / f"{first}.tmp")
            os.replace(out / folder / f"{first}.tmp", out / folder / f"{first}.parquet")

    monkeypatch.setattr(LocalExecutor, "open", open_while_another_finishes)
    cells = run_sweep(**kwargs, out=out)
    (invocation,) = json.loads((out / "run.json").read_text())["invocations"]
    assert invocation["computed"] == 1 and len(cells) == 2
    created = pq.read_table(out / "cells" / f"{first}.parquet")["created_utc"][0].as_py()
    assert created == done.set_index("cell_key").loc[first, "created_utc"]  # not rewritten
