"""Test-only problems for tests/test_sweeps.py, registered with ``--plugin tests.sweep_plugin``.

They reach worker processes and Ray tasks the way a user's own problems would: through
``bench.sweep.plugins``, not by patching the registries of the test process.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import ClassVar

from torch import Tensor

from problems.base import Params
from problems.options import Option
from problems.toys import BernoulliToy

MODES = ("ok", "raise", "nan", "hang", "crash")


class MisbehavingToy(BernoulliToy):
    """The Bernoulli toy, whose cost raises, returns NaN, hangs or kills its process when
    ``mode`` says so."""

    name = "misbehaving_toy"
    description = "Bernoulli toy whose cost raises, returns NaN, hangs or crashes (tests only)"
    options: ClassVar[dict[str, Option]] = BernoulliToy.options | {
        "mode": Option("ok", "how the cost misbehaves", choices=MODES),
    }

    def cost(self, z: Tensor, params: Params) -> Tensor:
        mode = self.option_values["mode"]
        if mode == "raise":
            raise RuntimeError("deliberate failure")
        if mode == "hang":
            time.sleep(3600)
        if mode == "crash":  # as a segfault or the out-of-memory killer would
            os.kill(os.getpid(), signal.SIGKILL)
        cost = super().cost(z, params)
        return cost * float("nan") if mode == "nan" else cost


class DataFileToy(BernoulliToy):
    """The Bernoulli toy with its target ``t`` read from a data file of numbers in [0, 1]."""

    name = "data_file_toy"
    description = "Bernoulli toy whose target is the mean of a data file (tests only)"
    options: ClassVar[dict[str, Option]] = BernoulliToy.options | {
        "data": Option("", "path of a text file of whitespace-separated numbers in [0, 1]"),
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        path = Path(str(self.option_values["data"]))
        if not path.is_file():
            raise ValueError(f"{path}: no such file (expected numbers in [0, 1])")
        try:
            values = [float(v) for v in path.read_text().split()]
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"{path}: malformed, expected whitespace-separated numbers") from None
        if not values or not all(0 <= v <= 1 for v in values):
            raise ValueError(f"{path}: malformed, expected at least one number, all in [0, 1]")
        self.option_values["t"] = sum(values) / len(values)


class CountingToy(BernoulliToy):
    """The Bernoulli toy, which appends its process id to the file ``log`` each time it is
    built to be measured (not when a sweep only checks that it can be built)."""

    name = "counting_toy"
    description = "Bernoulli toy that logs every construction (tests only)"
    options: ClassVar[dict[str, Option]] = BernoulliToy.options | {
        "log": Option("", "file to append this process's id to on every construction"),
    }

    @classmethod
    def validation_options(cls, options):
        return dict(options) | {"log": ""}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.option_values["log"]:
            with open(str(self.option_values["log"]), "a") as log:
                log.write(f"{os.getpid()}\n")


PROBLEMS = {"misbehaving_toy": MisbehavingToy, "data_file_toy": DataFileToy,
            "counting_toy": CountingToy}
