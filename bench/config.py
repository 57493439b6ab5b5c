"""Configuration shared by sweeps and training runs: dtype names and the parsing of names
and ``NAME=VALUE`` settings given on the command line or from Python."""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: the --dtype names and their torch types
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: the largest integer the tables hold (int64 columns)
INT64_MAX = 2**63 - 1


def check_range(option: str, value: int, low: int, high: int = INT64_MAX) -> int:
    """``value`` if ``low <= value <= high``, else ValueError naming ``option`` and the range.

    Checked before any work starts: a value the tables cannot hold (int64) would otherwise
    fail only when the finished work is written, and the work would be lost.
    """
    if not low <= value <= high:
        raise ValueError(f"invalid {option} {value}: expected an integer in {low}..{high}")
    return value


def select(names: Sequence[str], registry: dict, kind: str) -> list[str]:
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
