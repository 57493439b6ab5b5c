"""Declared, validated options for problems and estimators.

Every problem and estimator lists its options as ``Option`` objects; user values are
parsed and checked here, so that a bad value fails before any work starts with a
message naming the owner, the option, the value and the rule it broke.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OptionValue = int | float | str | bool


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
    """

    default: OptionValue
    help: str
    minimum: float | None = None
    exclusive: bool = False
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def rule(self) -> str:
        """The constraint in words, e.g. ``float > 0``."""
        parts = [self.type_name]
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive else '>='} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        if self.choices is not None:
            parts.append("one of " + ", ".join(self.choices))
        return " ".join(parts)

    def parse(self, owner: str, name: str, value: Any) -> OptionValue:
        """Convert ``value`` (possibly a string from the CLI) and check the constraints.

        Raises:
            ValueError: naming ``owner``, ``name``, the value and the rule.
        """
        bad = f"invalid option {name}={value!r} for {owner}: expected {self.rule()}"
        kind = type(self.default)
        try:
            if kind is bool:
                parsed: OptionValue = _parse_bool(value)
            elif kind is int:
                as_float = float(value)
                if not as_float.is_integer():
                    raise ValueError
                parsed = int(as_float)
            elif kind is float:
                parsed = float(value)
            else:
                parsed = str(value)
        except (TypeError, ValueError):
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
        if self.choices is not None and parsed not in self.choices:
            raise ValueError(bad)
        return parsed


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
