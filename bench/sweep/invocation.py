"""The claims that let several invocations share one run directory
(``bench.sweep.store.RunStore``): each invocation's liveness lock, its claims on cells, and
the cleaning of what dead invocations left.

Before an invocation starts a cell it writes ``claims/<key>.json`` under the directory's
lock, unless a live invocation (one whose ``live/<id>.lock`` is still locked: the kernel
drops the lock when a process dies, even by SIGKILL) holds a claim on it; such cells it
leaves to their owner and waits for at the end. A claim is removed once the cell is
written. A claim left by a dead invocation that ran the cell in its own process means that
the cell may have killed it (a segfault, the out-of-memory killer): ``deaths`` counts such
claims, and the sweep runs such a cell in a child process of its own (``bench.sweep.run``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bench.env import utc_now
from bench.files import remove_temporaries, write_json
from bench.sweep.store import TOP_FILES, RunStore


@dataclass(frozen=True)
class Claim:
    """A claim file: who computes a cell, and how often it killed its process before.

    Attributes:
        invocation: the id of the claiming invocation (``live/<id>.lock``).
        in_process: the cell runs in the claiming process itself (``--executor local``).
        deaths: dead invocations that were running this cell in their own process.
        note: who they were (``bench process PID on HOST at TIME``), for the failed row.
    """

    invocation: str
    pid: int
    hostname: str
    started_utc: str
    in_process: bool
    deaths: int = 0
    note: str = ""

    def who(self) -> str:
        return f"bench process {self.pid} on {self.hostname} at {self.started_utc}"


def alive(store: RunStore, invocation: str) -> bool:
    """Whether invocation ``invocation`` of ``store`` still runs (holds ``live/<id>.lock``)."""
    path = store.root / "live" / f"{invocation}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_claim(store: RunStore, key: str) -> Claim | None:
    """The claim on cell ``key``, or None (no claim, or one torn by a crash)."""
    try:
        data = json.loads(store.claim_path(key).read_text())
        return Claim(**data)
    except (OSError, ValueError, TypeError):  # none, or torn by a crash: no claim
        return None


def clean(store: RunStore, invocation: str) -> list[str]:
    """Remove what dead invocations left behind; return one-line notes of what was removed.

    Call it under ``store.lock()``. Temporary files of killed writes are removed only when no
    other invocation runs (a live one may be writing them); lock files of dead
    invocations always, and their claims on cells that are finished anyway.
    """
    notes = []
    live = store.root / "live"
    others = [p.stem for p in live.glob("*.lock") if p.stem != invocation] \
        if live.is_dir() else []
    running = [name for name in others if alive(store, name)]
    for name in set(others) - set(running):
        (live / f"{name}.lock").unlink(missing_ok=True)
    if not running:
        removed = sum(remove_temporaries(store.root / sub) for sub in
                      ("cells", "coords", "claims") if (store.root / sub).is_dir())
        for name in TOP_FILES:
            removed += remove_temporaries(store.root, f".{name}.*.tmp")
        if removed:
            notes.append(f"removed {removed} temporary file(s) of writes that were killed")
    claims = store.root / "claims"
    for path in claims.glob("*.json") if claims.is_dir() else ():
        if store.cell_path(path.stem).exists():
            claim = read_claim(store, path.stem)
            if claim is None or not alive(store, claim.invocation):
                path.unlink(missing_ok=True)
    return notes


class Invocation:
    """One ``bench run`` working in a run directory: its liveness lock and its claims.

    Use it as a context manager: entering creates the directory, locks ``live/<id>.lock``
    and cleans what dead invocations left; leaving withdraws the claims on cells it did not
    finish (so that an interrupted cell does not count as one that killed its process) and
    releases the lock.
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.id = secrets.token_hex(8)
        self.notes: list[str] = []
        self._fd: int | None = None
        self._claimed: set[str] = set()

    def __enter__(self) -> Invocation:
        live = self.store.root / "live"
        with self.store.lock():
            live.mkdir(exist_ok=True)
            fd = os.open(live / f"{self.id}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
            self.notes = clean(self.store, self.id)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.store.lock():
            for key in self._claimed:
                claim = read_claim(self.store, key)
                if claim is not None and claim.invocation == self.id:
                    self.store.claim_path(key).unlink(missing_ok=True)
            if self._fd is not None:
                (self.store.root / "live" / f"{self.id}.lock").unlink(missing_ok=True)
                os.close(self._fd)
                self._fd = None
            for folder in ("live", "claims"):  # leave no empty bookkeeping behind
                with contextlib.suppress(OSError):
                    (self.store.root / folder).rmdir()

    def claim(
        self, key: str, in_process: bool, before: tuple[int, int] | None
    ) -> Claim | None:
        """Claim cell ``key`` for this invocation; None if it is another's or finished.

        Args:
            in_process: the cell will run in this process (``--executor local``).
            before: the stamp of its cell file when the sweep was planned (None: absent);
                a different file now means another invocation finished it.
        """
        store = self.store
        with store.lock():
            if store.finished(key, before):
                return None
            old = read_claim(store, key)
            if old is not None and old.invocation != self.id and alive(store, old.invocation):
                return None
            died = old is not None and old.in_process and old.invocation != self.id
            deaths = (old.deaths if old else 0) + int(died)
            note = old.who() if died else (old.note if old else "")
            claim = Claim(self.id, os.getpid(), platform.node(), utc_now(), in_process,
                          deaths, note)
            write_json(store.claim_path(key), claim.__dict__)
            self._claimed.add(key)
        return claim

    def release(self, key: str) -> None:
        """Withdraw the claim on a cell this invocation has written."""
        self.store.claim_path(key).unlink(missing_ok=True)
        self._claimed.discard(key)

    def busy(self, keys: Sequence[str]) -> set[str]:
        """The cells of ``keys`` that live invocations other than this one have claimed."""
        with self.store.lock():
            busy = set()
            for key in keys:
                claim = read_claim(self.store, key)
                if claim and claim.invocation != self.id and alive(self.store, claim.invocation):
                    busy.add(key)
        return busy
