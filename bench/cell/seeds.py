"""Seeds: every random stream of the suite is seeded by a hash of what it measures.

One derivation, SHA-256 of a canonical text of the description, read as an integer
(``seed_of``). Three descriptions are in use, each fixed because its seeds are written into
result files and golden tables (changing one would move every number drawn under it):

* ``derive_seed(*parts)``: the ``repr`` of the parts (first 15 hex digits), for the pieces of
  ``bench verify`` and of the reproductions (a setting, an estimator, K, the base seed);
* ``config_seed(config)``: the canonical JSON of a cell's configuration (hex digits 16 to
  32, modulo 2^63), for ``CellSpec.cell_seed`` and ``CellSpec.problem_seed``;
* ``truth_seed(problem_seed, K)``: the JSON list ``[problem_seed, K]`` (first 15 hex
  digits), for the reference truth of a problem (``bench.cell.shared``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def seed_of(text: str, digits: slice = slice(0, 15), modulus: int | None = None) -> int:
    """The integer read from hex ``digits`` of SHA-256(``text``), modulo ``modulus``."""
    value = int(hashlib.sha256(text.encode()).hexdigest()[digits], 16)
    return value if modulus is None else value % modulus


def derive_seed(*parts: Any) -> int:
    """A seed for one piece of a run, from its description and the base seed (``repr``)."""
    return seed_of(repr(parts))


def canonical(config: dict[str, Any]) -> str:
    """A configuration as canonical JSON: sorted keys, no spaces."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def config_seed(config: dict[str, Any]) -> int:
    """A 63-bit seed hashed from a canonical JSON configuration (a cell's)."""
    return seed_of(canonical(config), slice(16, 32), 2**63)


def truth_seed(problem_seed: int, n_samples: int | None) -> int:
    """The seed of a reference truth: the problem's, and K on a multi-sample objective."""
    return seed_of(json.dumps([problem_seed, n_samples]))
