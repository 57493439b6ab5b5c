"""A run directory: per-cell files written atomically, consolidated tables, the record of
its invocations and the lock they share.

Layout of ``<out>/``::

    run.json             what the run was made with (every invocation appended)
    cells/<key>.parquet  one row of cells.parquet per finished cell
    coords/<key>.parquet that cell's rows of coords.parquet
    cells.parquet        all cells, consolidated at the end of each invocation
    coords.parquet       all coordinates
    .lock                locked (``flock``) for the short moments an invocation reads and
                         writes run.json, claims a cell or consolidates
    live/<id>.lock       locked by invocation <id> for as long as it runs
    claims/<key>.json    which invocation is computing the cell, since when, and whether
                         it runs it in its own process (``--executor local``)

Each ``cells/<key>.parquet`` carries the cell's canonical configuration (the JSON its key
hashes) in the Parquet schema metadata under ``gradbench.config``, so that a resumed run
can check that a stored cell is the cell it is asked for (``bench.sweep.run.check_resume``).

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), and a cell's coords are written before its cell row, so
a cell counts as finished when ``cells/<key>.parquet`` exists, and both halves read back
intact: one row with its own key, and as many coordinate rows as its ``grad_dim``. A cell
whose halves do not (a torn, truncated, missing or foreign file) counts as not finished
and is recomputed; ``stored`` says which and why.

Claims (``claims/``, ``live/``) are ``bench.sweep.invocation``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench import schema
from bench.files import check_output_dir, write_json, write_table

#: schema metadata key of a cell file's canonical configuration
CONFIG_METADATA = b"gradbench.config"

#: environment columns that identify the code that made a cell; see ``check_resume``
CODE_COLUMNS = ("git_commit", "package_version", "torch_version", "code_hash")

#: the consolidated tables and the record, whose temporary files a killed write leaves
TOP_FILES = ("run.json", "cells.parquet", "coords.parquet")


@dataclass(frozen=True)
class StoredCell:
    """What resuming needs to know of a finished cell on disk.

    Attributes:
        status: ``ok``, ``skipped`` or ``failed``.
        problem, estimator: registry names.
        config: the canonical configuration JSON, None in files written before it was stored.
        code: ``(column, value)`` pairs of ``CODE_COLUMNS`` (None where a file lacks one).
    """

    status: str
    problem: str
    estimator: str
    config: str | None
    code: tuple[tuple[str, str | None], ...]


def default_out(kind: str = "run") -> Path:
    """``results/<kind>-<local time>``, the default run directory."""
    return Path("results") / time.strftime(f"{kind}-%Y%m%d-%H%M%S")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


class DamagedCell(Exception):
    """A cell whose files do not read back as one finished cell (the message says why)."""


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

    def claim_path(self, key: str) -> Path:
        return self.root / "claims" / f"{key}.json"

    # checks before anything is written ------------------------------------------------------

    def check_readable(self) -> None:
        """Fail with one line if an existing directory cannot be read as a run directory."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise ValueError(f"--out {self.root}: exists and is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ValueError(f"--out {self.root}: directory is not readable")
        for name in ("cells", "coords", "claims", "live"):
            entry = self.root / name
            if entry.exists() and not entry.is_dir():
                raise ValueError(
                    f"--out {self.root}: {name} is not a directory (a run directory keeps "
                    f"one file per cell in {name}/); move it away"
                )
        for name in TOP_FILES:
            entry = self.root / name
            if entry.exists() and not entry.is_file():
                raise ValueError(f"--out {self.root}: {name} is not a regular file; move it away")
        if self.manifest_path.exists():
            self._manifest()

    def check_writable(self) -> None:
        """Fail early with one line if the directory cannot be created or written."""
        check_output_dir(self.root)

    # finished cells ------------------------------------------------------------------------

    def read_cell(self, key: str, full: bool = True) -> tuple[pa.Table, pa.Table]:
        """Both halves of a finished cell, checked to belong together.

        Args:
            full: read every column (for consolidation); else only what resuming needs
                and what the check reads: the files' footers (a torn or truncated file
                has none), the rows' keys, their number, and the cell's status, names,
                code columns and configuration (schema metadata, kept on the table).

        Raises:
            DamagedCell: naming the file at fault and why (the cell counts as not finished).
        """
        need = {schema.CELLS: ["cell_key", "status", "grad_dim", "problem", "estimator",
                               *CODE_COLUMNS],
                schema.COORDS: ["cell_key"]}
        tables = []
        for path, table_schema in ((self.cell_path(key), schema.CELLS),
                                   (self.coords_path(key), schema.COORDS)):
            name = path.relative_to(self.root)
            if not path.is_file():
                raise DamagedCell(f"{name} is missing")
            try:
                if full:
                    metadata = pq.read_schema(path).metadata
                    table = pq.read_table(path, schema=table_schema)
                else:
                    parquet = pq.ParquetFile(path)
                    metadata = parquet.schema_arrow.metadata
                    present = set(parquet.schema_arrow.names)
                    table = parquet.read([c for c in need[table_schema] if c in present])
                    for column in need[table_schema]:  # files from before a column existed
                        if column not in present:
                            table = table.append_column(
                                column, pa.nulls(table.num_rows, table_schema.field(column).type))
                tables.append(table.replace_schema_metadata(metadata))
            except (OSError, pa.ArrowException, ValueError) as err:
                raise DamagedCell(f"{name} is unreadable ({_first_line(err)})") from None
        cell, coords = tables
        if cell.num_rows != 1:
            raise DamagedCell(f"cells/{key}.parquet has {cell.num_rows} rows, expected 1")
        if cell["cell_key"][0].as_py() != key:
            raise DamagedCell(f"cells/{key}.parquet holds cell {cell['cell_key'][0].as_py()}")
        status, dim = cell["status"][0].as_py(), cell["grad_dim"][0].as_py()
        expected = dim if status == "ok" else 0
        if coords.num_rows != expected:
            raise DamagedCell(
                f"coords/{key}.parquet has {coords.num_rows} rows, expected {expected}"
            )
        keys = set(coords["cell_key"].to_pylist())
        if keys - {key}:
            raise DamagedCell(f"coords/{key}.parquet holds rows of cell {sorted(keys - {key})[0]}")
        return cell, coords

    def stored(
        self,
    ) -> tuple[dict[str, StoredCell], dict[str, str], dict[str, tuple[int, int] | None]]:
        """Every finished cell on disk by key, every damaged one with the reason, and the
        inode and modification time of each file as it was read.

        A damaged cell (``read_cell``) counts as not finished: a sweep that has it recomputes
        it, and ``consolidate`` leaves it out. The stamps are taken before the reads, so a
        file another invocation replaces after this snapshot is seen as ``finished``.
        """
        folder = self.root / "cells"
        if not folder.is_dir():
            return {}, {}, {}
        cells, damaged, stamps = {}, {}, {}
        for path in sorted(folder.glob("*.parquet")):
            key = path.stem
            stamps[key] = _stamp(path)
            try:
                cell, _ = self.read_cell(key, full=False)
            except DamagedCell as reason:
                damaged[key] = str(reason)
                continue
            config = (cell.schema.metadata or {}).get(CONFIG_METADATA)
            cells[key] = StoredCell(
                status=cell["status"][0].as_py(),
                problem=cell["problem"][0].as_py(),
                estimator=cell["estimator"][0].as_py(),
                config=None if config is None else config.decode(),
                code=tuple((name, cell[name][0].as_py()) for name in CODE_COLUMNS),
            )
        return cells, damaged, stamps

    def finished(self, key: str, before: tuple[int, int] | None) -> bool:
        """Whether ``cells/<key>.parquet`` exists and is not the file seen as ``before``."""
        now = _stamp(self.cell_path(key))
        return now is not None and now != before

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

    # run.json --------------------------------------------------------------------------------

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
        """Append an invocation (command, configuration, environment) to ``run.json``.

        Call it under ``lock``: run.json is read, extended and rewritten.
        """
        manifest = self._manifest() if self.manifest_path.exists() else {"invocations": []}
        manifest["invocations"].append(entry)
        write_json(self.manifest_path, manifest)

    def update_invocation(self, invocation: str, fields: dict[str, Any]) -> None:
        """Add ``fields`` to the ``run.json`` entry whose ``invocation`` is ``invocation``."""
        with self.lock():
            manifest = self._manifest()
            for entry in manifest["invocations"]:
                if isinstance(entry, dict) and entry.get("invocation") == invocation:
                    entry.update(fields)
            write_json(self.manifest_path, manifest)

    # sharing the directory ---------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory's lock (``.lock``, an exclusive ``flock``), waiting for it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as err:  # e.g. ENOLCK on a file system without locks
                raise ValueError(f"--out {self.root}: cannot lock {self.root / '.lock'} "
                                 f"({err.strerror}); use a run directory on a file system "
                                 "with file locks") from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # consolidation -----------------------------------------------------------------------------

    def consolidate(self) -> tuple[pd.DataFrame, dict[str, str]]:
        """Write ``cells.parquet`` and ``coords.parquet`` from the per-cell files.

        Returns:
            the cells, and the damaged cells left out (key -> reason).
        """
        with self.lock():
            cells, coords, damaged = [], [], {}
            folder = self.root / "cells"
            for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else ():
                try:
                    cell, coord = self.read_cell(path.stem)
                except DamagedCell as reason:
                    damaged[path.stem] = str(reason)
                    continue
                cells.append(cell.replace_schema_metadata(None))
                coords.append(coord.replace_schema_metadata(None))
            cell_table = _concat(cells, schema.CELLS)
            write_table(self.root / "cells.parquet", cell_table)
            write_table(self.root / "coords.parquet", _concat(coords, schema.COORDS))
        return cell_table.to_pandas(), damaged


def _concat(tables: list[pa.Table], table_schema: pa.Schema) -> pa.Table:
    if not tables:
        return table_schema.empty_table()
    table = pa.concat_tables(tables)
    order = [(name, "ascending") for name in ("problem", "estimator", "problem_options",
                                              "estimator_options", "n_samples", "device")]
    return table.sort_by(order)
