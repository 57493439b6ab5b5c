"""``bench reproduce``: rerun published experiments with the suite's estimators and problems.

Each reproduction (``bench.reproduce.base.Reproduction``) lives in its own module and is
registered here; its key is permanent (written into result files). ``reproduce(name, ...)``
runs one and writes its Parquet, comparison table and figure (``bench.reproduce.output``).

From Python::

    from bench.reproduce import reproduce
    outcome = reproduce("relax2018_fig1", mode="short", out="results/relax")
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.files import check_output_dir
from bench.reproduce.base import MODES, Claim, Mode, Outcome, Reference, Reproduction
from bench.reproduce.bernoulli_d200 import BernoulliD200
from bench.reproduce.disarm_vae import DisarmVAE
from bench.reproduce.group_baselines import GroupBaselines
from bench.reproduce.mohamed_blr import MohamedBLR
from bench.reproduce.mohamed_fig2 import MohamedFig2
from bench.reproduce.output import write_outcome
from bench.reproduce.reinmax_poly import ReinmaxPoly
from bench.reproduce.relax_toy import RelaxToy

REPRODUCTIONS: dict[str, type[Reproduction]] = {
    "mohamed2020_fig2": MohamedFig2,
    "relax2018_fig1": RelaxToy,
    "bernoulli_toy_d200": BernoulliD200,
    "disarm2020_vae": DisarmVAE,
    "reinmax2023_poly": ReinmaxPoly,
    "group_baselines2025": GroupBaselines,
    "mohamed2020_blr": MohamedBLR,
}


def get_reproduction(name: str) -> type[Reproduction]:
    """The reproduction registered as ``name``; the error lists the valid names."""
    try:
        return REPRODUCTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown reproduction {name!r}; valid reproductions: {', '.join(REPRODUCTIONS)} "
            "(see bench reproduce --list)"
        ) from None


def reproduce(
    name: str,
    mode: Mode = "short",
    out: str | Path | None = None,
    *,
    seed: int = 0,
    steps: int | None = None,
    data: str | None = None,
    progress: bool = False,
) -> tuple[Outcome, list[Path], float]:
    """Run reproduction ``name`` and write its files into ``out`` (default
    ``results/reproduce-<name>-<mode>``). Returns the outcome, the files written and the
    wall time in seconds. Bad input raises ValueError before any work starts."""
    cls = get_reproduction(name)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    out = Path(out) if out is not None else Path("results") / f"reproduce-{name}-{mode}"
    check_output_dir(out)
    reproduction = cls(steps=steps, data=data)
    start = time.perf_counter()
    outcome = reproduction.run(mode, seed, progress)
    elapsed = time.perf_counter() - start
    return outcome, write_outcome(cls, outcome, out, seed), elapsed


__all__ = [
    "MODES",
    "REPRODUCTIONS",
    "Claim",
    "Outcome",
    "Reference",
    "Reproduction",
    "get_reproduction",
    "reproduce",
]
