"""Configuration shared by sweeps and training runs: dtype names and the parsing of names
and ``NAME=VALUE`` settings given on the command line or from Python."""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: the --dtype names and their torch types
DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
