"""The environment a measurement was taken in, recorded with every result row."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

from bench import threads
from bench.registry import estimator_class, problem_class

ROOT = Path(__file__).resolve().parent.parent

#: the project's sources that decide the numbers a cell gives (see ``code_hash``)
NUMBER_SOURCES = ("estimators/**/*.py", "problems/**/*.py", "bench/cell/**/*.py",
                  "bench/config.py")


@cache
def git_commit() -> str:
    """HEAD of the checkout the code runs from, with ``+dirty`` if it has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def code_hash(problem: str, estimator: str) -> str:
    """SHA-256 (16 hex digits) of the source code that decides the numbers of a cell of
    ``problem`` and ``estimator``: the project's ``NUMBER_SOURCES`` and the modules of both
    classes and their bases, plugins included, so that resuming a run notices a changed
    plugin, and a changed checkout installed without git metadata (``git_commit`` unknown).
    """
    classes = (*problem_class(problem).__mro__, *estimator_class(estimator).__mro__)
    files = dict(_project_sources())
    for name in sorted({cls.__module__ for cls in classes}):
        source = getattr(sys.modules.get(name), "__file__", None)
        if source is not None:
            path = Path(source).resolve()
            files.setdefault(path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT)
                             else name, path)
    stamps = tuple((name, path, path.stat().st_mtime_ns, path.stat().st_size)
                   for name, path in sorted(files.items()))
    return _hash_files(stamps)


@cache
def _project_sources() -> tuple[tuple[str, Path], ...]:
    return tuple((path.relative_to(ROOT).as_posix(), path)
                 for pattern in NUMBER_SOURCES for path in ROOT.glob(pattern))


@cache
def _hash_files(stamps: tuple[tuple[str, Path, int, int], ...]) -> str:
    """The hash of the files in ``stamps`` (cached while their times and sizes stay)."""
    digest = hashlib.sha256()
    for name, path, _, _ in stamps:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def package_version() -> str:
    try:
        return metadata.version("gradbench")
    except metadata.PackageNotFoundError:
        return "unknown"


@cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """Human-readable name of ``device`` (the GPU model, or the CPU model)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return cpu_name()


def check_device(device: str) -> None:
    """Fail with one clear line if ``device`` cannot be used here."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"invalid device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available "
                f"(torch {torch.__version__}); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}: expected cpu, cuda or cuda:N")
    elif dev.index not in (None, 0):
        raise ValueError(f"unsupported device {device!r}: the CPUs are one device, cpu; "
                         "--threads sets how many of them a cell uses")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def environment(device: str = "cpu") -> dict[str, str | int]:
    """Columns that describe where and with what a result was produced."""
    return {
        "git_commit": git_commit(),
        "package_version": package_version(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": threads.wait_policy(),
        "hostname": platform.node(),
    }
