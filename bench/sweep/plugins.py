"""Plugin modules: problems and estimators that live outside this repository.

A plugin is an importable module that defines ``PROBLEMS: dict[str, type[Problem]]``
and/or ``ESTIMATORS: dict[str, type[Estimator]]``, like the built-in lists; it does not
touch them at import. ``--plugin MODULE`` (an option of every ``bench`` subcommand) names
it; ``load_plugins`` imports it and returns a ``bench.registry.Registry`` with its entries
added, which the invocation makes current (``bench.registry.use_registry``). Nothing
global changes: the next invocation in the same process sees the built-ins alone. Worker
processes and Ray tasks start from a fresh interpreter (or a fresh thread), so each
builds the same registry again from the plugin module names and the classes given in place
of names (``rebuild``) and enters it before it runs a cell. A module in the current
directory is found without setting ``PYTHONPATH``. A plugin may add names but never
replace one: registry keys are permanent because they are written into result files.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from bench.registry import BUILTINS, Registry, current_registry


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


def load_plugins(
    modules: Sequence[str],
    search: Sequence[str] | None = None,
    base: Registry | None = None,
) -> Registry:
    """``base`` with the problems and estimators of each plugin module added.

    Idempotent: a module already in ``base`` adds nothing again.

    Args:
        search: folders to look for plugins in besides ``sys.path`` (default: the current
            directory; worker processes are given the driver's).
        base: the registry to extend (default: the current one).

    Raises:
        ValueError: one line, for a module that cannot be imported (not found, a syntax
            error, an exception or ``sys.exit`` at import), or one whose entries
            ``Registry.with_module`` refuses.
    """
    registry = current_registry() if base is None else base
    for module_name in modules:
        module = _import(module_name, (os.getcwd(),) if search is None else search)
        registry = registry.with_module(module)
    return registry


def rebuild(
    plugins: Sequence[str], classes: Sequence[type], search: Sequence[str] | None = None
) -> Registry:
    """The registry a driver built from ``plugins`` and ``classes``, built again in a worker
    (from the built-ins, so a worker's own state never leaks in)."""
    registry = load_plugins(plugins, search, BUILTINS)
    for cls in classes:
        registry = registry.with_class(cls)
    return registry
