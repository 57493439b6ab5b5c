"""Plugin modules: problems and estimators that live outside this repository.

A plugin is an importable module that defines ``PROBLEMS: dict[str, type[Problem]]``
and/or ``ESTIMATORS: dict[str, type[Estimator]]``, like the registries themselves; it
does not touch the registries at import. ``bench run --plugin MODULE`` names it, and
``load_plugins`` adds its entries to ``problems.PROBLEMS`` and ``estimators.ESTIMATORS``
in the driver and, because worker processes and Ray tasks start from a fresh
interpreter, again in every worker before it runs a cell. A plugin may add names but never
replace one: registry keys are permanent because they are written into result files.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from estimators import ESTIMATORS
from problems import PROBLEMS


def load_plugins(modules: Sequence[str]) -> None:
    """Import each plugin module and register its problems and estimators.

    Idempotent: registering the same class under the same name again does nothing.

    Raises:
        ValueError: for a module that cannot be imported, one that defines neither
            registry, or a name already registered to a different class.
    """
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"--plugin {module_name}: cannot import it ({err})") from None
        found = False
        for attr, registry, kind in (
            ("PROBLEMS", PROBLEMS, "problem"),
            ("ESTIMATORS", ESTIMATORS, "estimator"),
        ):
            entries = getattr(module, attr, None)
            if entries is None:
                continue
            found = True
            for name, cls in entries.items():
                if registry.get(name, cls) is not cls:
                    raise ValueError(
                        f"--plugin {module_name}: {kind} {name!r} is already registered to "
                        f"{registry[name].__module__}.{registry[name].__qualname__}; "
                        "plugins may add names, never replace them"
                    )
                registry[name] = cls
        if not found:
            raise ValueError(
                f"--plugin {module_name}: the module defines neither PROBLEMS nor ESTIMATORS"
            )
