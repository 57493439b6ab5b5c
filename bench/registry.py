"""The registry an invocation sees: the built-in problems and estimators plus its plugins'.

``problems.PROBLEMS`` and ``estimators.ESTIMATORS`` are the built-in lists and are never
changed. A ``Registry`` is an immutable pair of mappings, the built-ins plus whatever an
invocation added (``with_module``: a ``--plugin`` module's ``PROBLEMS`` / ``ESTIMATORS``;
``with_class``: a class given to ``bench.run_sweep`` in place of a name); adding returns a
new registry. ``use_registry(registry)`` makes it the current one, a ``ContextVar``, for a
block: a ``bench`` invocation or one ``run_sweep`` call. Every lookup of a name in the
harness (``problem_class``, ``estimator_class``, the ``all`` of a list) reads
``current_registry()``, which outside any such block holds the built-ins alone. A registry
remembers the plugin module names and classes it was built from (``plugins``,
``classes``), from which a worker process or Ray task builds it again
(``bench.sweep.plugins.rebuild``). A name is added, never replaced: registry keys are
permanent because they are written into result files.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import MappingProxyType, ModuleType

from estimators import ESTIMATORS
from estimators.base import Estimator
from problems import PROBLEMS
from problems.base import Problem

#: a registry name: what a comma-separated --problem or --estimator list can hold
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: names that mean something else on the command line
RESERVED = ("all",)
#: (module attribute, kind, base class) of the two registries
KINDS = (("PROBLEMS", "problem", Problem), ("ESTIMATORS", "estimator", Estimator))


@dataclass(frozen=True)
class Registry:
    """Problems and estimators by name (see the module docstring).

    Attributes:
        problems, estimators: read-only mappings of name -> class, built-ins first.
        plugins: the plugin modules added, in order (``with_module``).
        classes: the classes added one by one (``with_class``), in order.
    """

    problems: Mapping[str, type[Problem]]
    estimators: Mapping[str, type[Estimator]]
    plugins: tuple[str, ...] = ()
    classes: tuple[type, ...] = ()

    def table(self, kind: str) -> Mapping[str, type]:
        """``problems`` or ``estimators``, by ``kind`` (``problem`` / ``estimator``)."""
        return self.problems if kind == "problem" else self.estimators

    def with_class(self, cls: type) -> Registry:
        """This registry with a problem or estimator class added under its ``name``
        (itself when that name already holds ``cls``).

        Raises:
            ValueError: for something that is not a problem or estimator class, a malformed
                or reserved name, or a name already registered to a different class.
        """
        for _, kind, base in KINDS:
            if isinstance(cls, type) and issubclass(cls, base):
                name = getattr(cls, "name", None)
                self._check(f"{cls.__module__}.{cls.__qualname__}", kind, name, cls)
                if self.table(kind).get(name) is cls:
                    return self
                return self._adding(kind, {name: cls}, classes=(*self.classes, cls))
        raise ValueError(f"{cls!r} is neither a problem nor an estimator class (a subclass of "
                         "problems.base.Problem or estimators.base.Estimator) nor a name")

    def with_module(self, module: ModuleType) -> Registry:
        """This registry with the entries of a plugin module's ``PROBLEMS`` and/or
        ``ESTIMATORS`` dicts added (an entry already there with the same class is kept).

        Raises:
            ValueError: one line starting ``--plugin MODULE:`` for a module that defines
                neither dict or one that is not a dict, an entry that is not a problem or
                estimator class, an estimator whose declarations are invalid
                (``Estimator.declaration_errors``: e.g. ``min_samples = 0`` or an unknown
                capability in ``requires``), a malformed or reserved name, or a name
                already registered to a different class.
        """
        where = f"--plugin {module.__name__}"
        found = [(attr, kind) for attr, kind, _ in KINDS if getattr(module, attr, None) is not None]
        if not found:
            raise ValueError(f"{where}: the module defines neither PROBLEMS nor ESTIMATORS")
        registry = self
        for attr, kind in found:
            entries = getattr(module, attr)
            if not isinstance(entries, dict):
                raise ValueError(f"{where}: {attr} is a {type(entries).__name__}, expected "
                                 "a dict of name -> class")
            for name, cls in entries.items():
                registry._check(where, kind, name, cls)
            registry = registry._adding(kind, entries)
        if module.__name__ in self.plugins:
            return registry
        return replace(registry, plugins=(*self.plugins, module.__name__))

    def _adding(self, kind: str, entries: Mapping[str, type], **fields: tuple) -> Registry:
        """A copy with ``entries`` added to the ``kind`` table and ``fields`` replaced."""
        table = MappingProxyType({**self.table(kind), **entries})
        return replace(self, **{f"{kind}s": table}, **fields)

    def _check(self, where: str, kind: str, name: object, cls: object) -> None:
        """Raise ValueError (one line, starting with ``where``) unless ``name -> cls`` may
        be added to the ``kind`` table."""
        base = Problem if kind == "problem" else Estimator
        if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED:
            raise ValueError(
                f"{where}: invalid {kind} name {name!r}: expected letters, digits, "
                f"'_', '.' or '-' (no commas), and not {', '.join(RESERVED)}"
            )
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ValueError(
                f"{where}: {kind} {name!r} is {cls!r}, expected a subclass of "
                f"{base.__module__}.{base.__qualname__}"
            )
        errors = cls.declaration_errors() if issubclass(cls, Estimator) else []
        if errors:
            raise ValueError(f"{where}: {kind} {name!r}: {'; '.join(errors)}")
        table = self.table(kind)
        if table.get(name, cls) is not cls:
            raise ValueError(
                f"{where}: {kind} {name!r} is already registered to "
                f"{table[name].__module__}.{table[name].__qualname__}; "
                "plugins may add names, never replace them"
            )


#: the built-ins alone: read-only views of ``problems.PROBLEMS`` and ``estimators.ESTIMATORS``
BUILTINS = Registry(MappingProxyType(PROBLEMS), MappingProxyType(ESTIMATORS))

_CURRENT: ContextVar[Registry] = ContextVar("registry")


def current_registry() -> Registry:
    """The registry of the running invocation (``BUILTINS`` outside ``use_registry``)."""
    return _CURRENT.get(BUILTINS)


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the current one inside the block (this thread / context only: a new
    thread starts with ``BUILTINS``, so pass the registry to it and enter it there)."""
    token = _CURRENT.set(registry)
    try:
        yield registry
    finally:
        _CURRENT.reset(token)


def problem_class(name: str) -> type[Problem]:
    """The problem class registered as ``name`` now; the error lists the valid names."""
    return _lookup("problem", name)


def estimator_class(name: str) -> type[Estimator]:
    """The estimator class registered as ``name`` now; the error lists the valid names."""
    return _lookup("estimator", name)


def _lookup(kind: str, name: str) -> type:
    table = current_registry().table(kind)
    try:
        return table[name]
    except KeyError:
        raise ValueError(
            f"unknown {kind} {name!r}; valid {kind}s: {', '.join(table)}"
        ) from None
