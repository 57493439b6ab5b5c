"""A cell's specification: one fully resolved, frozen configuration with a stable key.

A cell's key is a hash of its full configuration (options with defaults filled in), so the
same cell gets the same key, and the same random seed, in every run. Sweeps make cells
(``bench.sweep.spec.expand``); ``bench.cell.run.run_cell`` measures one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

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

    def config(self) -> dict[str, Any]:
        """The canonical, JSON-serialisable configuration."""
        return {
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

    def config_text(self) -> str:
        """``config()`` as canonical JSON: the text the key hashes, stored with the cell."""
        return json.dumps(self.config(), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.config_text().encode()).hexdigest()

    @property
    def key(self) -> str:
        """Stable 16-hex-digit identifier of the cell."""
        return self.digest[:16]

    @property
    def cell_seed(self) -> int:
        """The random seed of this cell, derived from the base seed through the key."""
        return int(self.digest[16:32], 16) % 2**63

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.estimator_options)
        return f"{self.problem}/{self.estimator}{f'[{opts}]' if opts else ''} K={self.n_samples}"
