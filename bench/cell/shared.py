"""What the cells of a sweep share: each distinct problem, built once per process, with its
evaluation point and its truth.

A problem's instance, evaluation point and truth are functions of its configuration (name,
options, device, dtype: ``CellSpec.problem_config``) alone, never of the cell that first
needs them: construction and the point are drawn under ``CellSpec.problem_seed`` (a
problem may draw from torch's global generator), and a ``reference`` truth under a seed
derived from it, each in a forked random stream, so the cell's own stream starts from its
``cell_seed`` whatever was built before it. So every estimator of a run is compared with
one truth, the same one in every process, and expensive set-up (a VAE's pretraining, a
GAN's critic training) happens once per process instead of once per cell.

Instances live in a small per-process cache (``CACHE_SIZE`` distinct problems, least
recently used first out): once per sweep for the local executor, once per worker process
for the process pool and Ray. The cache changes only the cost, never the numbers: an
evicted problem rebuilt later is the same problem with the same truth. Construction
happens inside the first cell that needs the problem, so it counts towards that cell's
``cell_s`` and its ``--cell-timeout``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from bench.cell.seeds import truth_seed
from bench.cell.spec import CellSpec
from bench.cell.truth import cell_truth
from bench.config import DTYPES
from bench.registry import problem_class
from problems.base import Params, Problem, Truth

#: distinct problems kept per process (a sweep runs the cells of one problem together)
CACHE_SIZE = 4


@dataclass
class SharedProblem:
    """A built problem, its evaluation point and its truths (by K where K matters)."""

    problem: Problem
    point: Params
    seed: int
    truths: dict[int | None, Truth | None] = field(default_factory=dict)

    def truth(self, n_samples: int) -> Truth | None:
        """The truth of a cell with K = ``n_samples`` (K matters only on multi-sample
        objectives), computed on first use under a seed of the problem and K."""
        k = n_samples if self.problem.multi_sample else None
        if k not in self.truths:
            seed = truth_seed(self.seed, k)
            with forked(seed, self.problem.device):
                self.truths[k] = cell_truth(self.problem, self.point, seed, n_samples)
        return self.truths[k]


_cache: OrderedDict[tuple, SharedProblem] = OrderedDict()


@contextlib.contextmanager
def forked(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)``, restoring the caller's stream after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def shared_problem(spec: CellSpec) -> SharedProblem:
    """The problem of ``spec``, built on first use in this process (see the module docstring).

    Raises:
        whatever the problem's constructor raises; nothing is cached then.
    """
    cls = problem_class(spec.problem)
    key = (cls, spec.problem_options, spec.device, spec.dtype)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    device = torch.device(spec.device)
    with forked(spec.problem_seed, device):
        problem = cls(dict(spec.problem_options), device=device, dtype=DTYPES[spec.dtype])
        point = {k: v.detach() for k, v in problem.init_params().items()}
    shared = SharedProblem(problem, point, spec.problem_seed)
    _cache[key] = shared
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return shared


def clear() -> None:
    """Forget every built problem (tests; a process that changes its registries)."""
    _cache.clear()
