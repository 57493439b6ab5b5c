"""A run directory: per-cell files written atomically, then consolidated tables.

Layout of ``<out>/``::

    run.json            what the run was made with (every invocation appended)
    cells/<key>.parquet one row of cells.parquet per finished cell
    coords/<key>.parquet that cell's rows of coords.parquet
    cells.parquet       all cells, consolidated at the end of each invocation
    coords.parquet      all coordinates

Each ``cells/<key>.parquet`` carries the cell's canonical configuration (the JSON its key
hashes) in the Parquet schema metadata under ``gradbench.config``, so that a resumed run
can check that a stored cell is the cell it is asked for (``bench.sweep.run.check_resume``).

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), and a cell's coords are written before its cell row, so
a cell counts as finished exactly when ``cells/<key>.parquet`` exists; a killed run loses at
most the cells in flight and never leaves a torn file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench import schema
from bench.files import write_json, write_table

#: schema metadata key of a cell file's canonical configuration
CONFIG_METADATA = b"gradbench.config"

#: environment columns that identify the code that made a cell; see ``check_resume``
CODE_COLUMNS = ("git_commit", "package_version", "torch_version")


@dataclass(frozen=True)
class StoredCell:
    """What resuming needs to know of a finished cell on disk.

    Attributes:
        status: ``ok``, ``skipped`` or ``failed``.
        config: the canonical configuration JSON, None in files written before it was stored.
        code: ``(column, value)`` pairs of ``CODE_COLUMNS``.
    """

    status: str
    config: str | None
    code: tuple[tuple[str, str], ...]


def default_out(kind: str = "run") -> Path:
    """``results/<kind>-<local time>``, the default run directory."""
    return Path("results") / time.strftime(f"{kind}-%Y%m%d-%H%M%S")


class RunStore:
    """The files of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "run.json"

    def cell_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.parquet"

    def coords_path(self, key: str) -> Path:
        return self.root / "coords" / f"{key}.parquet"

    def check_readable(self) -> None:
        """Fail with one line if an existing directory cannot be read as a run directory."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise ValueError(f"--out {self.root}: exists and is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ValueError(f"--out {self.root}: directory is not readable")
        if self.manifest_path.exists():
            self._manifest()

    def check_writable(self) -> None:
        """Fail early with one line if the directory cannot be created or written."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"--out {self.root}: exists and is not a directory")
        probe = self.root if self.root.exists() else next(
            (p for p in self.root.parents if p.exists()), Path(".")
        )
        if not probe.is_dir():
            raise ValueError(f"--out {self.root}: {probe} exists and is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise ValueError(f"--out {self.root}: directory {probe} is not writable")
        try:  # os.access says yes to root, and on file systems such as /proc or /sys
            tempfile.TemporaryDirectory(dir=probe).cleanup()
        except OSError as err:
            raise ValueError(
                f"--out {self.root}: cannot create a directory in {probe} ({err.strerror})"
            ) from None

    def stored(self) -> dict[str, StoredCell]:
        """Every cell already on disk, by key.

        Raises:
            ValueError: naming a cell file that cannot be read or does not hold its key.
        """
        folder = self.root / "cells"
        if not folder.is_dir():
            return {}
        cells = {}
        for path in sorted(folder.glob("*.parquet")):
            try:
                table = pq.read_table(path, columns=["cell_key", "status", *CODE_COLUMNS])
                metadata = table.schema.metadata or {}
                key = table["cell_key"][0].as_py()
            except (OSError, pa.ArrowException, IndexError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise ValueError(
                    f"--out {self.root}: cannot read {path.relative_to(self.root)} ({first}); "
                    "move it away to recompute that cell"
                ) from None
            if key != path.stem:
                raise ValueError(
                    f"--out {self.root}: {path.relative_to(self.root)} holds cell {key}, "
                    f"expected {path.stem}; move it away to recompute that cell"
                )
            config = metadata.get(CONFIG_METADATA)
            cells[key] = StoredCell(
                status=table["status"][0].as_py(),
                config=None if config is None else config.decode(),
                code=tuple((name, table[name][0].as_py()) for name in CODE_COLUMNS),
            )
        return cells

    def write_cell(
        self, row: dict[str, Any], coords: list[dict[str, Any]], config: str | None = None
    ) -> None:
        """Write a cell's coords, then its row (with ``config`` in the file's metadata)."""
        key = row["cell_key"]
        write_table(self.coords_path(key), schema.table(coords, schema.COORDS))
        table = schema.table([row], schema.CELLS)
        if config is not None:
            table = table.replace_schema_metadata({CONFIG_METADATA: config.encode()})
        write_table(self.cell_path(key), table)

    def _manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"--out {self.root}: cannot read run.json ({type(err).__name__}: {err})"
            ) from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("invocations"), list):
            raise ValueError(
                f"--out {self.root}: run.json is not a run record (no list 'invocations')"
            )
        return manifest

    def record_invocation(self, entry: dict[str, Any]) -> None:
        """Append an invocation (command, configuration, environment) to ``run.json``."""
        manifest = self._manifest() if self.manifest_path.exists() else {"invocations": []}
        manifest["invocations"].append(entry)
        write_json(self.manifest_path, manifest)

    def consolidate(self) -> pd.DataFrame:
        """Write ``cells.parquet`` and ``coords.parquet`` from the per-cell files; return cells."""
        cells = _concat(sorted((self.root / "cells").glob("*.parquet")), schema.CELLS)
        coords = _concat(sorted((self.root / "coords").glob("*.parquet")), schema.COORDS)
        write_table(self.root / "cells.parquet", cells)
        write_table(self.root / "coords.parquet", coords)
        return cells.to_pandas()


def _concat(paths: list[Path], table_schema: pa.Schema) -> pa.Table:
    if not paths:
        return table_schema.empty_table()
    table = pa.concat_tables([pq.read_table(p, schema=table_schema) for p in paths])
    order = [(name, "ascending") for name in ("problem", "estimator", "problem_options",
                                              "estimator_options", "n_samples", "device")]
    return table.sort_by(order)
