"""An adversary's inputs: each ends in one clear line and exit code 2 (or a failed row), never
a traceback, a hang or a silently different measurement.

Every case goes through ``bench.cli.main`` as a user's command line would. The cases come
from the adversarial walk-through of issue 16 (items "Reliability" and 19): broken plugins,
unusable output paths, damaged data files, numbers that used to be accepted and then lost
the finished work, options that were silently ignored or substituted.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.registry import BUILTINS, current_registry
from estimators import ESTIMATORS
from problems import PROBLEMS

ROOT = Path(__file__).resolve().parent.parent


def tiny(problem: str = "bernoulli_toy", estimator: str = "reinforce",
         samples: str = "2", repeats: int = 20) -> list[str]:
    """The options of a small, quick sweep."""
    return ["--problem", problem, "--estimator", estimator, "--samples", samples,
            "--repeats", str(repeats), "--bootstrap", "0", "--no-progress"]


#: the smallest sweep: one cheap cell
TINY = tiny()


@pytest.fixture(autouse=True)
def plugins_leave_no_trace(monkeypatch):
    """A plugin extends the registry of its invocation alone: after the test the built-ins
    and the current registry are as before. Importing one extends sys.path and
    sys.modules, which are restored."""
    saved = dict(PROBLEMS), dict(ESTIMATORS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules = set(sys.modules)
    yield
    assert (dict(PROBLEMS), dict(ESTIMATORS)) == saved
    assert current_registry() is BUILTINS
    for name in set(sys.modules) - modules:
        if name.startswith("plugin_"):
            del sys.modules[name]


def refused(capsys, args: list[str], message: str) -> str:
    """Run ``bench ARGS``; assert exit code 2 and one line on stderr holding ``message``."""
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err and len(err.splitlines()) == 1, err
    return err


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# plugins ------------------------------------------------------------------------------------

ESTIMATOR_OK = "from estimators.score_function import Reinforce\n"

PLUGINS = {
    "raises": ("raise RuntimeError('plugin is broken')",
               "importing it raised RuntimeError: plugin is broken"),
    "syntax": ("def broken(:\n    pass", "syntax error in"),
    "not_a_dict": ("PROBLEMS = ['bernoulli_toy']", "PROBLEMS is a list, expected a dict"),
    "not_a_class": ("ESTIMATORS = {'mine': 42}",
                    "estimator 'mine' is 42, expected a subclass of estimators.base.Estimator"),
    "wrong_base": ("from problems.toys import BernoulliToy\nESTIMATORS = {'mine': BernoulliToy}",
                   "estimator 'mine' is <class 'problems.toys.BernoulliToy'>, expected a "
                   "subclass of estimators.base.Estimator"),
    "exits": ("import sys\nsys.exit(3)", "the module called sys.exit(3) when imported"),
    "named_all": (ESTIMATOR_OK + "ESTIMATORS = {'all': Reinforce}",
                  "invalid estimator name 'all'"),
    "comma_name": (ESTIMATOR_OK + "ESTIMATORS = {'a,b': Reinforce}",
                   "invalid estimator name 'a,b'"),
    "replaces": (ESTIMATOR_OK + "class Other(Reinforce):\n    pass\n"
                 "ESTIMATORS = {'reinforce': Other}",
                 "estimator 'reinforce' is already registered"),
    "empty": ("X = 1", "the module defines neither PROBLEMS nor ESTIMATORS"),
}


@pytest.mark.parametrize("case", list(PLUGINS))
@pytest.mark.parametrize("command", ["list", "run"])
def test_a_broken_plugin_is_one_line(tmp_path, monkeypatch, capsys, case, command):
    source, message = PLUGINS[case]
    (tmp_path / f"plugin_{case}.py").write_text(source + "\n")
    monkeypatch.chdir(tmp_path)  # found in the current directory, without PYTHONPATH
    args = [command, "--plugin", f"plugin_{case}"]
    if command == "run":
        args += [*TINY, "--out", str(tmp_path / "run")]
    refused(capsys, args, f"--plugin plugin_{case}: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [(".relative", "expected an absolute module name"),
     ("plugin_absent", "cannot import it: no module named 'plugin_absent'"),
     ("plugin-dash", "expected an absolute module name")],
)
def test_a_plugin_name_that_cannot_be_imported_is_one_line(capsys, name, message):
    refused(capsys, ["list", "--plugin", name], f"--plugin {name}: {message}")


PLUGIN_ESTIMATOR = """
from estimators.score_function import Reinforce


class Mine(Reinforce):
    name = "mine"
    description = "REINFORCE under another name (tests only)"


ESTIMATORS = {"mine": Mine}
"""


@pytest.mark.parametrize("command", ["list", "run", "train", "figures", "table", "paper"])
def test_every_subcommand_takes_plugin_from_the_current_directory(
    tmp_path, monkeypatch, capsys, command
):
    (tmp_path / "plugin_mine.py").write_text(PLUGIN_ESTIMATOR)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    if command == "list":
        assert main(["list", "--plugin", "plugin_mine"]) == 0
        assert "mine: REINFORCE under another name" in capsys.readouterr().out
    elif command == "run":
        assert main(["run", "--plugin", "plugin_mine", *tiny(estimator="mine"),
                     "--out", "run"]) == 0
        cells = pd.read_parquet(tmp_path / "run" / "cells.parquet")
        assert list(cells["estimator"]) == ["mine"] and list(cells["status"]) == ["ok"]
    else:  # the option is there: a bad one is refused before anything else happens
        extra = {"train": ["--problem", "bernoulli_toy"], "figures": ["nowhere"],
                 "table": ["nowhere"], "paper": []}[command]
        refused(capsys, [command, *extra, "--plugin", "plugin_nothing", "--out", "o"],
                "--plugin plugin_nothing: cannot import it")
        assert main([command, "--help"]) == 0
        assert "--plugin MODULE" in capsys.readouterr().out


def test_run_sweep_takes_classes(tmp_path):
    from bench import run_sweep
    from estimators.score_function import Reinforce
    from problems.toys import BernoulliToy

    class Renamed(Reinforce):
        name = "renamed"
        description = "REINFORCE under another name (tests only)"

    cells = run_sweep(estimators=[Renamed, "reinforce"], problems=BernoulliToy, samples=[2],
                      repeats=20, bootstrap=0, progress=False, out=tmp_path)
    assert sorted(cells["estimator"]) == ["reinforce", "renamed"]
    # each name is its own configuration, so its own seed (CellSpec.cell_seed): the two cells
    # draw from the same law, not the same numbers
    assert list(cells["status"]) == ["ok", "ok"] and list(cells["n_finite"]) == [20, 20]
    with pytest.raises(ValueError, match="neither a problem nor an estimator class"):
        run_sweep(estimators=[int], out=tmp_path / "other", progress=False)


PROBLEM_RAISES = """
from problems.toys import BernoulliToy


class Broken(BernoulliToy):
    name = "broken_toy"
    description = "a problem whose constructor raises (tests only)"

    def __init__(self, *args, **kwargs):
        raise RuntimeError("constructor is broken")


PROBLEMS = {"broken_toy": Broken}
"""

CELL_EXITS = """
import sys

from problems.toys import BernoulliToy


class Exits(BernoulliToy):
    name = "exiting_toy"
    description = "a problem whose cost calls sys.exit (tests only)"

    def cost(self, z, params):
        sys.exit(4)


PROBLEMS = {"exiting_toy": Exits}
"""


@pytest.mark.parametrize(
    ("source", "problem", "reason"),
    [(PROBLEM_RAISES, "broken_toy", "RuntimeError: constructor is broken"),
     (CELL_EXITS, "exiting_toy", "SystemExit: the cell called sys.exit(4)")],
    ids=["constructor-raises", "cell-exits"],
)
def test_a_broken_plugin_problem_fails_its_cells_only(tmp_path, monkeypatch, capsys,
                                                      source, problem, reason):
    (tmp_path / "plugin_problem.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    args = ["run", "--plugin", "plugin_problem", *tiny(problem=f"{problem},bernoulli_toy"),
            "--out", "run"]
    assert main(args) == 1
    cells = pd.read_parquet(tmp_path / "run" / "cells.parquet").fillna({"reason": ""})
    by_problem = dict(zip(cells["problem"], zip(cells["status"], cells["reason"],
                                                strict=True), strict=True))
    assert by_problem == {problem: ("failed", reason), "bernoulli_toy": ("ok", "")}


def test_a_changed_plugin_is_noticed_on_resume(tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "plugin_changing.py"
    plugin.write_text(PLUGIN_ESTIMATOR)
    monkeypatch.chdir(tmp_path)
    args = ["run", "--plugin", "plugin_changing", *tiny(estimator="mine"), "--out", "run"]
    assert main(args) == 0
    assert main(args) == 0  # unchanged: resumed
    plugin.write_text(PLUGIN_ESTIMATOR.replace("(tests only)", "(tests only, changed)"))
    del sys.modules["plugin_changing"]
    assert "mine" not in ESTIMATORS  # the invocations left the built-ins as they were
    refused(capsys, args, "holds cells made by other code (code_hash=")


# paths --------------------------------------------------------------------------------------

def _paths(tmp: Path) -> dict[str, tuple[str, str]]:
    """``--out`` values that cannot be a run directory, and what the message says."""
    regular = tmp / "a_file"
    regular.write_text("x")
    (tmp / "dangling").symlink_to(tmp / "missing" / "target")
    (tmp / "loop_a").symlink_to(tmp / "loop_b")
    (tmp / "loop_b").symlink_to(tmp / "loop_a")
    return {
        "under-a-file": (str(regular / "run"), "a_file exists and is not a directory"),
        "a-file": (str(regular), "exists and is not a directory"),
        "not-writable": ("/proc/gradbench-run", "cannot create a directory in /proc"),
        "too-long": (str(tmp / ("x" * 300)), "is longer than the 255 bytes"),
        "dangling-symlink": (str(tmp / "dangling"), "is a symbolic link to a missing target"),
        "looping-symlink": (str(tmp / "loop_a" / "run"), "is a symbolic link loop"),
        "not-utf8": (str(tmp) + "/run-" + os.fsdecode(b"\xff"), "the name is not valid UTF-8"),
        "past-path-max": (str(tmp / "/".join(["a" * 200] * 25)),
                          "bytes the system allows (PATH_MAX)"),
        "empty": ("", "--out '': empty path"),
    }


PATH_CASES = ["under-a-file", "a-file", "not-writable", "too-long", "dangling-symlink",
              "looping-symlink", "not-utf8", "past-path-max", "empty"]


@pytest.mark.parametrize("case", PATH_CASES)
@pytest.mark.parametrize("command", ["run", "train", "figures", "paper"])
def test_an_unusable_out_is_one_line_and_creates_nothing(tmp_path, capsys, case, command):
    out, message = _paths(tmp_path)[case]
    if command == "figures" and case == "a-file":
        pytest.skip("figures writes into --out: a file there is the same case as under-a-file")
    before = files(tmp_path)
    args = {
        "run": ["run", *TINY],
        "train": ["train", "--problem", "bernoulli_toy", "--estimator", "reinforce",
                  "--steps", "2", "--no-progress"],
        "figures": ["figures", str(ROOT / "tests" / "golden")],
        "paper": ["paper", "--no-progress"],
    }[command]
    refused(capsys, [*args, "--out", out], message)
    assert files(tmp_path) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [("cells", "cells is not a directory"), ("coords", "coords is not a directory"),
     ("cells.parquet", "cells.parquet is not a regular file"),
     ("run.json", "run.json is not a regular file")],
)
def test_a_run_directory_with_a_wrong_entry_is_refused(tmp_path, capsys, damage, message):
    out = tmp_path / "run"
    out.mkdir()
    if damage.endswith("parquet") or damage.endswith("json"):
        (out / damage).mkdir()
    else:
        (out / damage).write_text("not a directory")
    before = files(tmp_path)
    refused(capsys, ["run", *TINY, "--out", str(out)], message)
    assert files(tmp_path) == before


# data files ---------------------------------------------------------------------------------

def _idx(images: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, images.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in images.shape)
    return header + images.astype(np.uint8).tobytes()


def _data_file(tmp: Path, case: str) -> Path:
    images = np.random.default_rng(0).integers(0, 256, size=(30, 4, 4)).astype(np.uint8)
    if case == "corrupt-deflate":
        packed = bytearray(gzip.compress(_idx(images)))
        packed[12:40] = bytes(28)  # inside the deflate stream, after the gzip header
        path = tmp / "x.idx.gz"
        path.write_bytes(bytes(packed))
    elif case == "structured":
        path = tmp / "x.npz"
        np.savez(path, images=np.zeros(30, dtype=[("a", "f4"), ("b", "f4")]))
    elif case == "text":
        path = tmp / "x.npz"
        path.write_text("0 1 0 1\n1 0 1 0\n")
    elif case == "npy":
        path = tmp / "x.npz"
        with open(path, "wb") as handle:
            np.save(handle, images)
    elif case == "floats-above-one":
        path = tmp / "x.npz"
        np.savez(path, images=images / 255.0 * 1.5)
    elif case.startswith("compressed-"):  # np.savez_compressed, then torn or flipped
        path = tmp / "x.npz"
        np.savez_compressed(path, images=images)
        packed = bytearray(path.read_bytes())
        if case == "compressed-flipped":
            packed[len(packed) // 2] ^= 0xFF  # inside the deflate stream of images.npy
        path.write_bytes(bytes(packed[: {"compressed-half": len(packed) // 2,
                                          "compressed-last-byte": -1}.get(case)]))
    elif case == "huge":
        path = tmp / "x.idx"
        with open(path, "wb") as handle:  # sparse: no disk space, but too large to read
            handle.truncate(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return path


DATA_CASES = {
    "corrupt-deflate": "corrupt gzip data",
    "structured": "expected a numeric array of images, got dtype",
    "text": "not a readable .npz archive",
    "npy": "a single .npy array, not an .npz archive",
    "compressed-half": "not a readable .npz archive (File is not a zip file)",
    "compressed-last-byte": "not a readable .npz archive (File is not a zip file)",
    "compressed-flipped": "not a readable .npz archive (",
    "floats-above-one": "values in 0..1.5 are neither intensities in [0, 1] nor whole grey levels",
    "huge": "GiB, more than half of the",
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_a_bad_data_file_is_one_line(tmp_path, capsys, case):
    path = _data_file(tmp_path, case)
    err = refused(capsys, ["run", *tiny(problem="bernoulli_vae"),
                           "--out", str(tmp_path / "run"), "--set", f"data={path}"],
                  f"problem 'bernoulli_vae': {path}: ")
    assert DATA_CASES[case] in err
    assert not (tmp_path / "run").exists()


# numbers ------------------------------------------------------------------------------------

NUMBERS = [
    (["--seed", str(10**30)], "invalid --seed 1000000000000000000000000000000: expected an "
     "integer in"),
    (["--repeats", str(10**30)], "invalid --repeats 1000000000000000000000000000000"),
    (["--bootstrap", str(10**20)], "invalid --bootstrap 100000000000000000000"),
    (["--cell-timeout", "inf"], "invalid --cell-timeout inf: expected seconds > 0 and <= "),
    (["--cell-timeout", "1e30"], "invalid --cell-timeout 1e+30"),
    (["--cell-timeout", "nan"], "invalid --cell-timeout nan"),
    (["--threads", str(10**6)], "invalid --threads 1000000: expected 1.."),
    (["--executor", "process", "--workers", str(10**6)], "invalid --workers 1000000"),
    (["--samples", "١٠"], "invalid --samples '١٠': expected K[,K...] in ASCII digits"),
    (["--repeats", "١٠"], "argument --repeats: invalid integer '١٠': use ASCII digits 0-9"),
    (["--set", "t=٠.٥"], "invalid option t='٠.٥' for problem 'bernoulli_toy': expected float "
     "written in ASCII digits"),
    (["--problem", "bernoulli_toy"], "--problem is given more than once; give it once with a "
     "comma-separated list"),
    (["--estimator", "reinforce"], "--estimator is given more than once"),
    (["--device", "cpu:1"], "unsupported device 'cpu:1': the CPUs are one device"),
    (["--memory", "1KiB"], "argument --memory: '1KiB': expected a size from 1MiB to 1024TiB"),
    (["--memory", "12 parsecs"], "argument --memory: '12 parsecs': expected a size such as "
     "512MiB or 2GB (units: B, KiB"),
]


@pytest.mark.parametrize(("args", "message"), NUMBERS)
def test_a_bad_number_or_flag_for_run_is_one_line(tmp_path, capsys, args, message):
    base = list(TINY)
    for flag in ("--samples", "--repeats", "--bootstrap"):  # given once, by the case
        if flag in args:
            del base[base.index(flag):base.index(flag) + 2]
    refused(capsys, ["run", *base, *args, "--out", str(tmp_path / "run")], message)
    assert not (tmp_path / "run").exists()


TRAIN_NUMBERS = [
    (["--lr", "1e300"], "invalid --lr 1e+300: expected a number > 0 and <= 1000"),
    (["--lr", "nan"], "invalid --lr nan"),
    (["--steps", str(10**30)], "invalid --steps 1000000000000000000000000000000"),
    (["--seed", str(10**30)], "invalid --seed 1000000000000000000000000000000"),
    (["--threads", str(10**6)], "invalid --threads 1000000"),
    (["--samples", "٢"], "argument --samples: invalid integer '٢'"),
    (["--memory", "0"], "argument --memory: '0': expected a size from 1MiB"),
]


@pytest.mark.parametrize(("args", "message"), TRAIN_NUMBERS)
def test_a_bad_number_for_train_is_one_line(tmp_path, capsys, args, message):
    refused(capsys, ["train", "--problem", "bernoulli_toy", "--estimator", "reinforce",
                     "--no-progress", *args, "--out", str(tmp_path / "t")], message)
    assert not (tmp_path / "t").exists()


# options that used to be ignored or substituted silently -------------------------------------

OPTIONS = [
    (["--problem", "bernoulli_vae", "--set", "batch=100000"],
     "invalid option batch=100000 for problem 'bernoulli_vae': the training split of digits "
     "has 1438 images"),
    (["--problem", "bernoulli_vae", "--set", "hidden=abc"],
     "invalid option hidden='abc' for problem 'bernoulli_vae': expected str positive integers "
     "separated by dashes"),
    (["--problem", "bernoulli_vae", "--set", "hidden=200-200"],
     "--set hidden has no effect on problem 'bernoulli_vae': it applies only with arch=mlp, "
     "and this sweep has arch=linear"),
    (["--problem", "categorical_toy", "--set", "max_configs=1e16"],
     "invalid option max_configs='1e16' for problem 'categorical_toy': expected int >= 1 and "
     "<= 16777216"),
    (["--problem", "categorical_toy", "--set", "d=12345678901234567891"],
     "invalid option d='12345678901234567891'"),
]


@pytest.mark.parametrize(("args", "message"), OPTIONS)
def test_an_option_that_would_be_ignored_or_substituted_is_refused(tmp_path, capsys, args,
                                                                  message):
    base = ["--estimator", "reinforce", "--samples", "2", "--repeats", "20", "--bootstrap", "0",
            "--no-progress"]
    refused(capsys, ["run", *base, *args, "--out", str(tmp_path / "run")], message)
    assert not (tmp_path / "run").exists()


def test_an_option_for_some_cells_of_a_sweep_keeps_the_others_unchanged():
    from bench.sweep.spec import SweepSpec, expand

    cells = expand(SweepSpec(problems=("bernoulli_vae",), estimators=("reinforce",),
                             settings=(("arch", ("linear", "mlp")), ("hidden", ("8", "16")))))
    by_arch = {}
    for cell in cells:
        options = dict(cell.problem_options)
        by_arch.setdefault(options["arch"], set()).add(options["hidden"])
    # hidden means nothing to a linear network: one linear cell, with the default, not two
    assert by_arch == {"linear": {"64"}, "mlp": {"8", "16"}}


# figures ------------------------------------------------------------------------------------

def test_a_figure_with_many_panels_is_capped_not_refused(tmp_path):
    from bench.report.figures import MAX_HEIGHT_IN, draw, save

    assert main(["run", *tiny(estimator="reinforce,reinforce_loo", samples="2,3"),
                 "--out", str(tmp_path / "run")]) == 0
    cells = pd.read_parquet(tmp_path / "run" / "cells.parquet")
    many = pd.concat([cells.assign(problem_options=json.dumps({"d": i, "t": 0.45}))
                      for i in range(60)], ignore_index=True)
    plot, width, height = draw("variance_vs_samples", many, "double")
    assert height == MAX_HEIGHT_IN
    assert save(plot, tmp_path / "tall.png", width, height).stat().st_size > 0


# signals ------------------------------------------------------------------------------------

def test_ctrl_c_in_the_first_seconds_is_one_line(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    # a sweep of several seconds, so that a fast machine cannot finish it before the signal
    # (a TINY run once ended with exit 0 within the second)
    slow = tiny(samples="2,4,8,16,32,64", repeats=100_000)
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", *slow,
                             "--out", str(tmp_path / "run")],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
                            # a job started in the background by a script inherits SIGINT
                            # ignored, and Python keeps it so: give the child the default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.0)  # inside `import torch` or the first cells
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # 130; or death by SIGINT, which a shell reports as 130 too: Python ends that way when
    # the interrupt landed inside C code that ran Python (during `import torch`)
    assert proc.returncode in (130, -signal.SIGINT), err
    assert err.strip().splitlines() == [
        "bench run: interrupted: finished cells are kept; run the same command to resume"], err


# file modes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_result_files_respect_the_umask(tmp_path, umask):
    saved = os.umask(umask)
    try:
        assert main(["run", *TINY, "--out", str(tmp_path / "run")]) == 0
    finally:
        os.umask(saved)
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"]
    assert len(written) >= 5  # run.json, both tables, a cell's two halves
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o666 & ~umask)}

