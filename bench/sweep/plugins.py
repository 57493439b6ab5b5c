"""Plugin modules: problems and estimators that live outside this repository.

A plugin is an importable module that defines ``PROBLEMS: dict[str, type[Problem]]``
and/or ``ESTIMATORS: dict[str, type[Estimator]]``, like the registries themselves; it
does not touch the registries at import. ``--plugin MODULE`` (an option of every ``bench``
subcommand) names it, and ``load_plugins`` adds its entries to ``problems.PROBLEMS`` and
``estimators.ESTIMATORS`` in the driver and, because worker processes and Ray tasks start
from a fresh interpreter, again in every worker before it runs a cell. A module in the
current directory is found without setting ``PYTHONPATH``. A plugin may add names but never
replace one: registry keys are permanent because they are written into result files.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Sequence

from estimators import ESTIMATORS
from estimators.base import Estimator
from problems import PROBLEMS
from problems.base import Problem

#: a registry name: what a comma-separated --problem or --estimator list can hold
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: names that mean something else on the command line
RESERVED = ("all",)


def _import(module_name: str, search: Sequence[str]):
    """Import a plugin module, turning whatever goes wrong into one line."""
    if module_name.startswith(".") or not all(part.isidentifier()
                                              for part in module_name.split(".")):
        raise ValueError(
            f"--plugin {module_name}: expected an absolute module name such as my_plugin or "
            "package.module (importable from the current directory or PYTHONPATH)"
        )
    for folder in search:
        if folder not in sys.path and os.path.isdir(folder):
            sys.path.append(folder)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name + ".").startswith(err.name + "."):
            raise ValueError(
                f"--plugin {module_name}: cannot import it: no module named {err.name!r} in "
                "the current directory or on PYTHONPATH"
            ) from None
        raise ValueError(f"--plugin {module_name}: importing it failed ({err})") from None
    except SyntaxError as err:
        where = err.filename or _origin(module_name)
        line = f", line {err.lineno}" if err.lineno else ""
        raise ValueError(
            f"--plugin {module_name}: syntax error in {where}{line}: {err.msg}"
        ) from None
    except SystemExit as err:
        raise ValueError(
            f"--plugin {module_name}: the module called sys.exit({err.code!r}) when imported"
        ) from None
    except Exception as err:
        raise ValueError(
            f"--plugin {module_name}: importing it raised {type(err).__name__}: {err}"
        ) from None


def _origin(module_name: str) -> str:
    """The file a module would be imported from (for messages), or its name."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    return spec.origin if spec is not None and spec.origin else module_name


def load_plugins(modules: Sequence[str], search: Sequence[str] | None = None) -> None:
    """Import each plugin module and register its problems and estimators.

    Idempotent: registering the same class under the same name again does nothing.

    Args:
        search: folders to look for plugins in besides ``sys.path`` (default: the current
            directory; worker processes are given the driver's).

    Raises:
        ValueError: one line, for a module that cannot be imported (not found, a syntax
            error, an exception or ``sys.exit`` at import), one that defines neither
            registry or a registry that is not a dict, an entry that is not a problem or
            estimator class, an estimator whose declarations are invalid
            (``Estimator.declaration_errors``: e.g. ``min_samples = 0`` or an unknown
            capability in ``requires``), a malformed or reserved name, or a name already
            registered to a different class.
    """
    for module_name in modules:
        module = _import(module_name, (os.getcwd(),) if search is None else search)
        found = False
        for attr, registry, kind, base in (
            ("PROBLEMS", PROBLEMS, "problem", Problem),
            ("ESTIMATORS", ESTIMATORS, "estimator", Estimator),
        ):
            entries = getattr(module, attr, None)
            if entries is None:
                continue
            found = True
            if not isinstance(entries, dict):
                raise ValueError(f"--plugin {module_name}: {attr} is a "
                                 f"{type(entries).__name__}, expected a dict of name -> class")
            for name, cls in entries.items():
                _check_entry(f"--plugin {module_name}", kind, base, name, cls, registry)
            for name, cls in entries.items():
                registry[name] = cls
        if not found:
            raise ValueError(
                f"--plugin {module_name}: the module defines neither PROBLEMS nor ESTIMATORS"
            )


def _check_entry(where: str, kind: str, base: type, name: object, cls: object,
                 registry: dict) -> None:
    """Raise ValueError (one line, starting with ``where``) unless ``name -> cls`` may be
    added to ``registry``."""
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
    if registry.get(name, cls) is not cls:
        raise ValueError(
            f"{where}: {kind} {name!r} is already registered to "
            f"{registry[name].__module__}.{registry[name].__qualname__}; "
            "plugins may add names, never replace them"
        )


def register(cls: type) -> str:
    """Register a problem or estimator class under its ``name``; return the name.

    What ``bench.run_sweep`` does with a class given in place of a name. Worker processes
    and Ray tasks register it again from the class itself (Ray pickles a class defined in a
    notebook by value; the process pool needs its module to be importable).

    Raises:
        ValueError: for something that is not a problem or estimator class, a malformed or
            reserved name, or a name already registered to a different class.
    """
    for registry, kind, base in ((PROBLEMS, "problem", Problem),
                                 (ESTIMATORS, "estimator", Estimator)):
        if isinstance(cls, type) and issubclass(cls, base):
            name = getattr(cls, "name", None)
            _check_entry(f"{cls.__module__}.{cls.__qualname__}", kind, base, name, cls,
                         registry)
            registry[name] = cls
            return name
    raise ValueError(f"{cls!r} is neither a problem nor an estimator class (a subclass of "
                     "problems.base.Problem or estimators.base.Estimator) nor a name")
