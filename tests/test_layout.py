"""The layering of docs/architecture.md holds, and every package ships in the wheel."""

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: each package may import from the packages of its own rank or below, never above
RANK = {
    "problems": 0,
    "estimators": 1,
    "bench.config": 2,
    "bench.schema": 2,
    "bench.env": 2,
    "bench.files": 2,
    "bench.threads": 2,
    "bench.registry": 2,
    "bench.cell": 3,
    "bench.sweep": 4,
    "bench.training": 4,
    "bench.report": 4,
    "bench.verify": 4,
    "bench.reproduce": 5,  # composes cells, reports and its own training loop
    "bench.cli": 6,
    "bench": 7,  # bench/__init__.py and __main__.py: the public entry points
}
#: peers of the same rank that must not import each other
PEERS = {"bench.sweep", "bench.training", "bench.report", "bench.verify"}


def layer(module: str) -> str:
    """The entry of ``RANK`` a dotted module name belongs to."""
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in RANK:
            return name
    raise KeyError(module)


def modules() -> list[tuple[str, Path]]:
    found = []
    for top in ("problems", "estimators", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join(parts), path))
    return found


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "bench":  # from bench import env
            names.update(f"bench.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] in ("problems", "estimators", "bench")}


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v))
def test_no_import_from_a_higher_layer(module, path):
    own = layer(module)
    for name in imported(path):
        other = layer(name)
        if other == "bench" and own != "bench":
            raise AssertionError(f"{module} imports the entry point {name}")
        assert RANK[other] <= RANK[own], f"{module} ({own}) imports {name} ({other}) from above"
        assert not (own in PEERS and other in PEERS and own != other), (
            f"{module} imports its peer {name}"
        )


def test_every_package_is_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("problems", "estimators", "bench")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk == listed


def module_table() -> dict[str, set[str]]:
    """The module table of docs/architecture.md: ``{package dir: names in its modules cell}``
    (``name.py`` and ``sub/`` for a subpackage)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[a-z_/]+/`", cells[0]):
            names = re.findall(r"`([A-Za-z0-9_]+\.py|[a-z0-9_]+/)`", cells[1])
            rows[cells[0].strip("`")] = set(names)
    return rows


def test_module_table_lists_every_module():
    table = module_table()
    assert {"problems/", "estimators/", "bench/", "bench/cell/", "bench/cli/"} <= set(table)
    missing = []
    for _, path in modules():
        relative = path.relative_to(ROOT).as_posix()
        row = max((p for p in table if relative.startswith(p)), key=len, default=None)
        assert row is not None, f"{relative} belongs to no row of the module table"
        parts = relative.removeprefix(row).split("/")  # [sub/, ..., name.py]
        needed = [f"{part}/" for part in parts[:-1]] + [parts[-1]]
        missing += [f"{relative} ({name})" for name in needed if name not in table[row]]
    assert not missing, f"docs/architecture.md's module table lacks: {missing}"


def test_module_table_names_only_modules_that_exist():
    stale = []
    for row, names in module_table().items():
        for name in names:
            found = list((ROOT / row).rglob(name.rstrip("/")))
            if not found:
                stale.append(f"{row}{name}")
    assert not stale, f"docs/architecture.md's module table names what does not exist: {stale}"


#: the most lines of a module of ``problems/``, ``estimators/`` or ``bench/``
MAX_MODULE_LINES = 450
#: the most lines of a function there, its signature included and its docstring not
MAX_FUNCTION_LINES = 60


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines of a function less those of its docstring."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_modules_and_functions_stay_small():
    too_long = []
    for _, path in modules():
        text = path.read_text()
        relative = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{relative} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and function_lines(node) > MAX_FUNCTION_LINES:
                too_long.append(f"{relative}:{node.lineno} {node.name} "
                                f"({function_lines(node)} lines)")
    assert not too_long, (f"longer than {MAX_MODULE_LINES} lines a module or "
                          f"{MAX_FUNCTION_LINES} a function (docstring aside): {too_long}")
