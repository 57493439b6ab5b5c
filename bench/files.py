"""Atomic file writes and output directories.

A reader sees the old file or the new one, never a torn one: every file is written to a
temporary name ``.<name>.<random>.tmp`` beside it, flushed to disk and renamed into place.
New files get the mode the umask gives (``0o666 & ~umask``), like any file a program
creates, so that collaborators on a shared file system can read them.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: glob of the temporary files ``atomic_write`` leaves behind when it is killed
TEMPORARY = ".*.tmp"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # O_EXCL: never reuse a name; 0o666: the umask decides the mode
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str)))


def remove_temporaries(folder: Path, pattern: str = TEMPORARY) -> int:
    """Delete the temporary files (``pattern``) of writes that were killed; return how many."""
    removed = 0
    for tmp in folder.glob(pattern):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _check_path_length(option: str, text: str) -> None:
    """Refuse a path whose files (a name of up to NAME_MAX bytes in a subdirectory) would be
    longer than PATH_MAX, as given or made absolute."""
    try:
        path_max = os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        path_max = 4096
    room = 255 + len("/coords/")  # the longest file name a run directory keeps inside
    length = max(len(os.fsencode(text)), len(os.fsencode(os.path.abspath(text))))
    if length + room > path_max:
        raise ValueError(
            f"{option} {text[:40]}...: the path is {length} bytes long; with the files inside "
            f"it, it must stay under the {path_max} bytes the system allows (PATH_MAX)"
        )


def check_output_dir(path: str | Path, option: str = "--out") -> None:
    """Fail with one line, before anything is created, if ``path`` is not, and cannot be made,
    a writable directory.

    Refused: an empty name, a name that is not valid UTF-8 (it could not be recorded in the
    tables), a component longer than the file system allows, a path too long for the files
    inside it (PATH_MAX), a dangling or looping symbolic link on
    the way, a regular file at ``path`` or above it, and a directory that is not writable.

    Raises:
        ValueError: naming ``option``, the path and what is wrong with it.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode()
        raise ValueError(f"{option} {shown}: the name is not valid UTF-8") from None
    root = Path(text)
    if not text.strip():
        raise ValueError(f"{option} {text!r}: empty directory name")
    _check_path_length(option, text)
    probe, missing = _existing_ancestor(option, root)
    if probe.exists() and not probe.is_dir():
        where = "" if probe == root else f"{probe} "
        raise ValueError(f"{option} {root}: {where}exists and is not a directory")
    longest = _name_max(probe)
    for part in missing:
        if len(os.fsencode(part.name)) > longest:
            raise ValueError(
                f"{option} {root}: the name {part.name[:20]}... is longer than the "
                f"{longest} bytes the file system allows"
            )
    _check_writable(option, root, probe)


def _existing_ancestor(option: str, root: Path) -> tuple[Path, list[Path]]:
    """The nearest of ``root`` and its parents that exists (or the file system's root), and
    the missing paths on the way to it, nearest first; a dangling or looping symbolic link
    on the way raises."""
    missing: list[Path] = []
    probe = root
    while True:
        try:
            probe.stat()
            break
        except FileNotFoundError:
            if probe.is_symlink():
                raise ValueError(
                    f"{option} {root}: {probe} is a symbolic link to a missing target "
                    f"({os.readlink(probe)})"
                ) from None
        except NotADirectoryError:
            pass  # a file on the way: the loop reaches it and the caller says so
        except OSError as err:
            if err.errno != errno.ENAMETOOLONG:  # too long: the caller says so, naming the part
                reason = "a symbolic link loop" if err.errno == errno.ELOOP else err.strerror
                raise ValueError(f"{option} {root}: {probe} is {reason}") from None
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    return probe, missing


def _check_writable(option: str, root: Path, probe: Path) -> None:
    """Fail if a directory can not be made in the existing directory ``probe``."""
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {root}: directory {probe} is not writable")
    try:  # os.access says yes to root, and on file systems such as /proc or /sys
        tempfile.TemporaryDirectory(dir=probe).cleanup()
    except OSError as err:
        raise ValueError(
            f"{option} {root}: cannot create a directory in {probe} ({err.strerror})"
        ) from None
