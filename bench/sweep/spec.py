"""Sweep specifications: CLI input -> validated, frozen cells.

Configuration flows one way: the CLI (or ``run_sweep``) builds a ``SweepSpec``; ``expand``
validates every name and value and crosses them into ``CellSpec``s before any work starts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from bench.cell.spec import CellSpec
from bench.config import (
    DEFAULT_MEMORY,
    check_count,
    check_dtype,
    check_known_options,
    check_memory,
    check_sample_rules,
    check_samples,
    check_seed,
    select,
)
from bench.registry import current_registry, estimator_class, problem_class


@dataclass(frozen=True)
class SweepSpec:
    """A sweep as the user states it: names, sample counts and swept option values.

    Attributes:
        settings: ``(name, values)`` pairs; every combination of values is a cell, for each
            problem and estimator that declares the option.
    """

    estimators: tuple[str, ...] = ("all",)
    problems: tuple[str, ...] = ("all",)
    samples: tuple[int, ...] = (10,)
    repeats: int = 1000
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    n_bootstrap: int = 1000
    memory: int = DEFAULT_MEMORY
    settings: tuple[tuple[str, tuple[str, ...]], ...] = field(default_factory=tuple)


def _grid(owner: str, declared: dict, settings: dict[str, tuple[str, ...]]) -> list[tuple]:
    """All combinations of the settings that ``declared`` accepts, fully resolved.

    An option that has no effect in a combination (``Option.applies``) keeps its default
    there, so that it neither changes the cell's key nor doubles the cell.

    Raises:
        ValueError: for a value that breaks its option's rule, or an option set where it
            has no effect in any combination (it would be ignored silently).
    """
    names = [n for n in settings if n in declared]
    grid, used = [], set()
    for values in itertools.product(*(settings[n] for n in names)):
        given = dict(zip(names, values, strict=True))
        resolved = {
            n: declared[n].parse(owner, n, given.get(n, declared[n].default)) for n in declared
        }
        for n, option in declared.items():
            if option.applies is not None and resolved[option.applies[0]] not in option.applies[1]:
                resolved[n] = option.default
            elif n in given:
                used.add(n)
        grid.append(tuple(sorted(resolved.items())))
    for n in names:
        if n not in used:
            other, values = declared[n].applies
            has = ",".join(sorted({str(dict(cell)[other]) for cell in grid}))
            raise ValueError(
                f"--set {n} has no effect on {owner}: it applies only with "
                f"{other}={'|'.join(map(str, values))}, and this sweep has {other}={has}; "
                f"add --set {other}={values[0]} or drop --set {n}"
            )
    return list(dict.fromkeys(grid))


def expand(sweep: SweepSpec) -> list[CellSpec]:
    """Validate a sweep and cross it into cells.

    Raises:
        ValueError: for an unknown name, an option no selected problem or estimator has, a
            value that breaks its option's rule, or invalid K, R, dtype or bootstrap count.
    """
    registry = current_registry()
    problems = select(sweep.problems, registry.problems, "problem")
    estimators = select(sweep.estimators, registry.estimators, "estimator")
    check_samples(sweep.samples)
    check_count("--repeats", sweep.repeats, 2, "R must be >= 2 to measure variance")
    check_dtype(sweep.dtype)
    check_count("--bootstrap", sweep.n_bootstrap, 0, "must be >= 0")
    check_seed(sweep.seed)
    check_memory(sweep.memory)
    names = [name for name, _ in sweep.settings]
    twice = [name for i, name in enumerate(names) if name in names[:i]]
    if twice:
        raise ValueError(f"--set {twice[0]} is given more than once; give all its values in "
                         f"one --set {twice[0]}=V1,V2,...")
    settings = dict(sweep.settings)
    check_known_options(settings, [registry.problems[p] for p in problems],
                        [registry.estimators[e] for e in estimators])
    if list(sweep.estimators) != ["all"]:  # with "all", such a K gives skipped cells instead
        check_sample_rules([registry.estimators[e] for e in estimators], sweep.samples)
    cells = []
    for p in problems:
        problem_grid = _grid(f"problem {p!r}", problem_class(p).options, settings)
        for e in estimators:
            estimator_grid = _grid(f"estimator {e!r}", estimator_class(e).options, settings)
            for p_opts, e_opts, k in itertools.product(
                problem_grid, estimator_grid, sweep.samples
            ):
                estimator_cls = estimator_class(e)
                if estimator_cls.sample_rule(k) is None and (
                    rule := estimator_cls.options_rule(dict(e_opts), k)
                ):
                    raise ValueError(rule)
                cells.append(
                    CellSpec(
                        problem=p,
                        problem_options=p_opts,
                        estimator=e,
                        estimator_options=e_opts,
                        n_samples=k,
                        n_repeats=sweep.repeats,
                        seed=sweep.seed,
                        device=sweep.device,
                        dtype=sweep.dtype,
                        n_bootstrap=sweep.n_bootstrap,
                        memory=sweep.memory,
                    )
                )
    return list(dict.fromkeys(cells))  # a repeated K would otherwise run its cells twice
