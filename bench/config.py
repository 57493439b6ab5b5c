"""Configuration shared by sweeps, training runs, ``bench verify`` and the reproductions: dtype
names, the parsing of names and ``NAME=VALUE`` settings, and the one validation path of what
they share (counts, seeds, dtype, options known to the selected problems and estimators, the
K each estimator takes), so that the same bad input gets the same one-line message from
every subcommand and from Python (``bench.sweep.spec.expand``,
``bench.training.train.make_spec``, ``bench.verify.verify_one``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

#: the --dtype names and their torch types
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: the largest integer the tables hold (int64 columns)
INT64_MAX = 2**63 - 1
#: the largest K, R, bootstrap count or number of steps: 2^40 (10^12) estimates, samples or
#: steps is days of work for the cheapest cell; a larger count is a typo, refused before the
#: work starts
MAX_COUNT = 2**40
#: the default --memory: the bytes one chunk of repeats may allocate (256 MiB)
DEFAULT_MEMORY = 2**28
#: --memory units, binary (KiB) and decimal (KB); a bare number is bytes
MEMORY_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
                "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
#: the smallest --memory: below 1 MiB the probes of ``bench.cell.estimate`` dominate
MIN_MEMORY = 2**20


def check_range(option: str, value: int, low: int, high: int = INT64_MAX) -> int:
    """``value`` if ``low <= value <= high``, else ValueError naming ``option`` and the range.

    Checked before any work starts: a value the tables cannot hold (int64) would otherwise
    fail only when the finished work is written, and the work would be lost.
    """
    if not low <= value <= high:
        raise ValueError(f"invalid {option} {value}: expected an integer in {low}..{high}")
    return value


def select(names: Sequence[str], registry: Mapping[str, type], kind: str) -> list[str]:
    """Resolve ``all`` and check names against a registry."""
    if list(names) == ["all"]:
        return list(registry)
    chosen: list[str] = []
    for name in names:
        if name not in registry:
            raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: all, {', '.join(registry)}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"no {kind} selected; valid {kind}s: all, {', '.join(registry)}")
    return chosen


def parse_setting(text: str) -> tuple[str, tuple[str, ...]]:
    """``'tau=0.5,1'`` -> ``('tau', ('0.5', '1'))``."""
    name, sep, values = text.partition("=")
    items = tuple(v.strip() for v in values.split(",") if v.strip())
    if not sep or not name.strip() or not items:
        raise ValueError(f"invalid --set {text!r}: expected NAME=VALUE[,VALUE...]")
    return name.strip(), items


def names(value: str | Sequence[str]) -> tuple[str, ...]:
    """``'a,b'`` or ``['a', 'b']`` -> ``('a', 'b')``."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is a ``DTYPES`` name, else ValueError listing them."""
    if dtype not in DTYPES:
        raise ValueError(f"invalid --dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return dtype


def check_seed(seed: int, option: str = "--seed") -> int:
    """A seed the tables hold (int64)."""
    return check_range(option, seed, -INT64_MAX - 1, INT64_MAX)


def check_count(option: str, value: int, low: int, rule: str = "") -> int:
    """A count from ``low`` to ``MAX_COUNT``; ``rule`` says why below ``low`` (e.g. ``R must
    be >= 2 to measure variance``)."""
    if value < low:
        raise ValueError(f"invalid {option} {value}: {rule or f'expected an integer >= {low}'}")
    return check_range(option, value, low, MAX_COUNT)


def check_samples(samples: Sequence[int]) -> tuple[int, ...]:
    """K values: at least one, each in 1..``MAX_COUNT``."""
    if not samples:
        raise ValueError("invalid --samples: no K given; expected K[,K...] with every K >= 1")
    if any(k < 1 for k in samples):
        raise ValueError(f"invalid --samples {list(samples)}: every K must be >= 1")
    for k in samples:
        check_range("--samples", k, 1, MAX_COUNT)
    return tuple(samples)


def single_settings(settings: Sequence[str], command: str) -> dict[str, str]:
    """``NAME=VALUE`` settings of a command that takes one value per option."""
    given: dict[str, str] = {}
    for text in settings:
        name, values = parse_setting(text)
        if len(values) != 1:
            raise ValueError(f"invalid --set {text!r}: {command} takes one value per option")
        if name in given:
            raise ValueError(f"--set {name} is given more than once; {command} takes one "
                             "value per option")
        given[name] = values[0]
    return given


def check_known_options(
    names: Iterable[str], problems: Iterable[type], estimators: Iterable[type]
) -> None:
    """Every option name is declared by one of the selected problem or estimator classes."""
    known = {n for cls in (*problems, *estimators) for n in cls.options}
    for name in names:
        if name not in known:
            raise ValueError(
                f"unknown option {name!r} for the selected problems and estimators; "
                f"valid options: {', '.join(sorted(known)) or '(none)'}"
            )


def check_sample_rules(estimators: Iterable[type], samples: Sequence[int]) -> None:
    """Every named estimator takes every K (``Estimator.sample_rule``)."""
    for cls in estimators:
        for k in samples:
            rule = cls.sample_rule(k)
            if rule is not None:
                raise ValueError(f"invalid --samples {list(samples)}: {rule}")


def parse_memory(text: str) -> int:
    """``'512MiB'``, ``'2GB'`` or ``'268435456'`` (bytes) -> bytes, from ``MIN_MEMORY`` to
    ``2**50``: the budget of one chunk of repeats (``bench.cell.estimate.measured_chunk_size``)."""
    stripped = text.strip()
    number = stripped.rstrip("".join({c for unit in MEMORY_UNITS for c in unit}))
    unit = stripped[len(number):] or "B"
    try:
        value = float(number) * MEMORY_UNITS[unit]
    except (KeyError, ValueError):
        raise ValueError(f"invalid --memory {text!r}: expected a size such as 512MiB or 2GB "
                         f"(units: {', '.join(MEMORY_UNITS)})") from None
    return check_memory(int(value), text)


def check_memory(value: int, text: str | None = None) -> int:
    """A chunk budget in bytes from ``MIN_MEMORY`` to ``2**50``."""
    if not MIN_MEMORY <= value <= 2**50:
        raise ValueError(f"invalid --memory {text or value!r}: expected a size from 1MiB to "
                         "1024TiB")
    return value
