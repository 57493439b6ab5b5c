"""Declared, validated options for problems and estimators.

Every problem and estimator lists its options as ``Option`` objects; user values are
parsed and checked here, so that a bad value fails before any work starts with a
message naming the owner, the option, the value and the rule it broke.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OptionValue = int | float | str | bool

#: the range of an int option whatever its own bounds: the 64-bit integers of the tables
INT_RANGE = (-(2**63), 2**63 - 1)
#: the largest latent space an enumeration may cover (the ``max_configs`` options): about a
#: minute at the ~3 us per configuration of categorical_toy on one CPU thread; beyond it an
#: exact truth costs hours, so it is refused before any work starts
MAX_ENUMERATED = 2**24


@dataclass(frozen=True)
class Option:
    """One option: its default (whose type is the option's type) and its constraints.

    Args:
        default: default value; ``int``, ``float``, ``str`` or ``bool``.
        help: one line for ``bench list`` and the README.
        minimum: smallest allowed value for numbers.
        exclusive: if True the minimum itself is not allowed (``> minimum``).
        maximum: largest allowed value for numbers (inclusive).
        choices: the allowed values for strings.
        pattern: a regular expression a string value must match in full, e.g. ``\\d+(-\\d+)*``.
        pattern_help: the pattern in words, for messages.
        applies: ``(option, values)``: the option has an effect only where that other option
            of the same owner has one of ``values`` (``bench.sweep.spec`` refuses a value set
            where it has none, instead of ignoring it silently).
    """

    default: OptionValue
    help: str
    minimum: float | None = None
    exclusive: bool = False
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_help: str = ""
    applies: tuple[str, tuple[OptionValue, ...]] | None = None

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def rule(self) -> str:
        """The constraint in words, e.g. ``float > 0``."""
        parts = [self.type_name]
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive else '>='} {self._number(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'and ' if self.minimum is not None else ''}"
                         f"<= {self._number(self.maximum)}")
        if self.choices is not None:
            parts.append("one of " + ", ".join(self.choices))
        if self.pattern is not None:
            parts.append(self.pattern_help or f"matching {self.pattern}")
        return " ".join(parts)

    def _number(self, value: float) -> str:
        return str(int(value)) if isinstance(self.default, int) else f"{value:g}"

    def parse(self, owner: str, name: str, value: Any) -> OptionValue:
        """Convert ``value`` (possibly a string from the CLI) and check the constraints.

        Raises:
            ValueError: naming ``owner``, ``name``, the value and the rule.
        """
        bad = f"invalid option {name}={value!r} for {owner}: expected {self.rule()}"
        kind = type(self.default)
        if kind in (int, float) and isinstance(value, str) and not value.isascii():
            raise ValueError(f"{bad} written in ASCII digits")
        try:
            if kind is bool:
                parsed: OptionValue = _parse_bool(value)
            elif kind is int:
                parsed = _parse_int(value)
            elif kind is float:
                parsed = float(value)
            else:
                parsed = str(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(bad) from None
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise ValueError(f"invalid option {name}={value!r} for {owner}: expected a finite "
                             f"{self.rule()}")
        if kind in (int, float):
            if self.minimum is not None and (
                parsed < self.minimum or (self.exclusive and parsed == self.minimum)
            ):
                raise ValueError(bad)
            if self.maximum is not None and parsed > self.maximum:
                raise ValueError(bad)
        if kind is int and not INT_RANGE[0] <= parsed <= INT_RANGE[1]:
            raise ValueError(f"{bad} (a 64-bit integer)")
        if self.choices is not None and parsed not in self.choices:
            raise ValueError(bad)
        if self.pattern is not None and not re.fullmatch(self.pattern, str(parsed)):
            raise ValueError(bad)
        return parsed


def _parse_int(value: Any) -> int:
    """An int from an int, an integral float, or text such as ``12`` or ``1e3`` (exactly)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    as_float = float(value)
    if not as_float.is_integer() or abs(as_float) > 2**53:  # beyond 2^53 a float is inexact
        raise ValueError(value)
    return int(as_float)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def resolve_options(
    owner: str, declared: Mapping[str, Option], given: Mapping[str, Any]
) -> dict[str, OptionValue]:
    """Fill defaults, parse and validate ``given`` against ``declared``.

    Raises:
        ValueError: for an unknown option name (listing the valid ones) or a bad value.
    """
    unknown = sorted(set(given) - set(declared))
    if unknown:
        valid = ", ".join(sorted(declared)) or "(none)"
        raise ValueError(f"unknown option {unknown[0]!r} for {owner}; valid options: {valid}")
    return {
        name: option.parse(owner, name, given.get(name, option.default))
        for name, option in declared.items()
    }
