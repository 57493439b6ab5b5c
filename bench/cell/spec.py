"""A cell's specification: one fully resolved, frozen configuration with a stable key.

A cell's key is a hash of its full configuration (options with defaults filled in), so the
same cell gets the same key in every run. Its random seed is a hash of what defines the
measurement, the configuration less ``n_bootstrap``: the estimates depend on the problem,
the estimator, their options, K, R, device, dtype and base seed, never on how many bootstrap
replicates summarise them, so a cell of ``bench paper`` draws the same estimates as the
same cell of ``bench run``. The memory budget of a chunk of repeats (``--memory``) sets
the chunking and with it the random stream (``bench.cell.estimate.measured_chunk_size``),
so it is part of the configuration, and of the key, where it is not the default (so that
cells measured before the option existed keep their keys), not of the seed. The problem
itself (instance, evaluation point, truth) is a function of ``problem_config`` alone and is
shared by every cell of a sweep (``bench.cell.shared``). Sweeps make cells
(``bench.sweep.spec.expand``); ``bench.cell.run.run_cell`` measures one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from bench.cell.seeds import canonical, config_seed
from bench.config import DEFAULT_MEMORY
from problems.options import OptionValue


@dataclass(frozen=True)
class CellSpec:
    """One measurement: a problem and estimator with all options, K, R, seed and device."""

    problem: str
    problem_options: tuple[tuple[str, OptionValue], ...]
    estimator: str
    estimator_options: tuple[tuple[str, OptionValue], ...]
    n_samples: int
    n_repeats: int
    seed: int
    device: str = "cpu"
    dtype: str = "float32"
    n_bootstrap: int = 1000
    memory: int = DEFAULT_MEMORY

    def config(self) -> dict[str, Any]:
        """The canonical, JSON-serialisable configuration (``memory`` where not the
        default)."""
        config = {
            "problem": self.problem,
            "problem_options": dict(self.problem_options),
            "estimator": self.estimator,
            "estimator_options": dict(self.estimator_options),
            "n_samples": self.n_samples,
            "n_repeats": self.n_repeats,
            "seed": self.seed,
            "device": self.device,
            "dtype": self.dtype,
            "n_bootstrap": self.n_bootstrap,
        }
        if self.memory != DEFAULT_MEMORY:
            config["memory"] = self.memory
        return config

    def config_text(self) -> str:
        """``config()`` as canonical JSON: the text the key hashes, stored with the cell."""
        return canonical(self.config())

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.config_text().encode()).hexdigest()

    @property
    def key(self) -> str:
        """Stable 16-hex-digit identifier of the cell."""
        return self.digest[:16]

    def measurement_config(self) -> dict[str, Any]:
        """What seeds the estimates: ``config()`` less ``n_bootstrap`` and ``memory`` (a
        budget that leaves the chunking as it is leaves the estimates bit-identical)."""
        return {k: v for k, v in self.config().items() if k not in ("n_bootstrap", "memory")}

    def problem_config(self) -> dict[str, Any]:
        """What defines the problem's instance, evaluation point and truth."""
        return {k: self.config()[k] for k in ("problem", "problem_options", "device", "dtype")}

    @property
    def cell_seed(self) -> int:
        """The random seed of the estimates, from the base seed and ``measurement_config``."""
        return config_seed(self.measurement_config())

    @property
    def problem_seed(self) -> int:
        """The random seed of the problem's construction, point and reference truth, from
        ``problem_config``: the same for every estimator, K, R and base seed."""
        return config_seed(self.problem_config())

    def label(self) -> str:
        options = ",".join(f"{k}={v}" for k, v in self.estimator_options)
        bracket = f"[{options}]" if options else ""
        return f"{self.problem}/{self.estimator}{bracket} K={self.n_samples}"
