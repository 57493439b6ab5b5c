"""A real multi-node Ray cluster on this machine, and a sweep on it that survives node failure.

``benchmarks/ray_cluster.sh`` (or ``python -m benchmarks.ray_cluster``) starts a head and two
worker nodes as separate ``ray start`` processes, each on its own loopback address
(127.0.0.2, 127.0.0.3, 127.0.0.4; nothing else is ever addressed) with one CPU, and then:

1. runs a small sweep locally (``--executor local``): the reference;
2. runs it on the cluster (``bench run --executor ray --ray-address 127.0.0.2:PORT``),
   SIGKILLs every process of one worker node while its cells are running, and checks that
   every cell is in the run directory exactly once, ``ok``, with the reference's numbers
   bit for bit;
3. runs it again on the cluster into a new directory, SIGKILLs the driver after its first
   cells, kills and restarts the head and the surviving worker, resumes the run into the
   same directory on the new cluster, and checks the same.

Every process it starts is killed on exit, also on failure or Ctrl-C: the nodes' processes
are found by their command lines (which name this run's own temporary directory, address
and port) and their descendants, and SIGKILLed by pid, so no other Ray instance on the
machine is touched (``ray stop`` would stop them all). Each step has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HEAD_IP = "127.0.0.2"
WORKER_IPS = ("127.0.0.3", "127.0.0.4")
#: the sweep: 6 cells of 1 to 6 seconds each on one CPU
SWEEP = ("--problem", "bernoulli_toy", "--set", "d=200", "--estimator", "reinforce,reinforce_loo",
         "--samples", "2,4,8", "--repeats", "100000", "--bootstrap", "100", "--no-progress",
         "--threads", "1")
#: columns measured (timings, memory, when, where) rather than computed from the estimates
MEASURED = {"run_id", "created_utc", "hostname", "time_per_estimate_s", "time_iqr_s", "time_n",
            "estimates_per_s", "measure_s", "stats_s", "peak_memory_bytes", "cell_s"}
STEP_TIMEOUT_S = 300.0


def free_port(host: str) -> int:
    """A TCP port nothing listens on at ``host`` now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, command line)}`` of every process visible in /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (ppid, cmd)
    return found


def _with_descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    found, grew = set(roots), True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


class Cluster:
    """Ray nodes started by ``ray start`` under one private temporary directory.

    Args:
        root: directory for the nodes' temporary files and logs (this cluster's own).
        port: the head's GCS port on ``HEAD_IP``.
    """

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.address = f"{HEAD_IP}:{port}"
        self.env = os.environ | {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),  # this cluster's own, never written out
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        self.roots: dict[str, set[int]] = {}  # node ip -> pids of its processes

    def _ray(self, args: list[str], log: str) -> None:
        with open(self.root / log, "ab") as out:
            subprocess.run([str(Path(sys.executable).with_name("ray")), *args], env=self.env,
                           stdout=out, stderr=subprocess.STDOUT, check=True,
                           timeout=STEP_TIMEOUT_S, cwd=self.root)

    def start_node(self, ip: str) -> None:
        """Start the head (``ip == HEAD_IP``) or a worker node with one CPU at ``ip``."""
        common = ["--node-ip-address", ip, "--num-cpus", "1", "--disable-usage-stats",
                  "--dashboard-agent-listen-port", "0", "--block"]
        if ip == HEAD_IP:
            args = ["start", "--head", "--port", str(self.port), "--include-dashboard=false",
                    "--ray-client-server-port", str(free_port(HEAD_IP)),
                    "--temp-dir", str(self.root / "ray"), *common]
        else:
            args = ["start", "--address", self.address, *common]
        log = open(self.root / f"node-{ip}.log", "ab")  # noqa: SIM115 (closed with the node)
        process = subprocess.Popen([str(Path(sys.executable).with_name("ray")), *args],
                                   env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=self.root, start_new_session=True)
        log.close()
        self.roots[ip] = {process.pid}
        self.wait_for_nodes(ip)

    def alive_nodes(self) -> set[str]:
        """The node addresses the head reports alive."""
        code = (f"import ray, json; ray.init(address={self.address!r}, logging_level='ERROR');"
                "print(json.dumps([n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']]))")
        try:
            out = subprocess.run([sys.executable, "-c", code], env=self.env, timeout=60,
                                 capture_output=True, text=True, cwd=self.root)
        except subprocess.TimeoutExpired:
            return set()
        lines = out.stdout.strip().splitlines()
        return set(json.loads(lines[-1])) if out.returncode == 0 and lines else set()

    def wait_for_nodes(self, *ips: str, timeout_s: float = 120.0) -> None:
        """Wait until the head reports every node of ``ips`` alive."""
        deadline = time.monotonic() + timeout_s
        while not set(ips) <= self.alive_nodes():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray nodes {', '.join(ips)} not up after {timeout_s:g} s "
                                   f"(logs in {self.root})")
            time.sleep(1.0)

    def node_pids(self, ip: str) -> set[int]:
        """Every live process of the node at ``ip``: its ``ray start`` process, the processes
        whose command line names this node's address together with this cluster's port or
        directory, and all their descendants (the node's worker processes)."""
        table = _processes()
        mine = {pid for pid, (_, cmd) in table.items()
                if ip in cmd and (str(self.port) in cmd or str(self.root) in cmd)}
        return _with_descendants((self.roots.get(ip, set()) | mine) & set(table), table)

    def kill_node(self, ip: str) -> int:
        """SIGKILL every process of the node at ``ip``; returns how many there were."""
        pids = self.node_pids(ip)
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.roots.pop(ip, None)
        return len(pids)

    def stop(self) -> None:
        """SIGKILL every process of every node of this cluster (never another Ray's)."""
        for ip in (HEAD_IP, *WORKER_IPS):
            self.kill_node(ip)


@contextmanager
def cluster(workers: int = 2) -> Iterator[Cluster]:
    """A head and ``workers`` worker nodes, stopped on exit whatever happens."""
    root = Path(tempfile.mkdtemp(prefix="gradbench-ray-"))
    nodes = Cluster(root, free_port(HEAD_IP))
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        nodes.start_node(HEAD_IP)
        for ip in WORKER_IPS[:workers]:
            nodes.start_node(ip)
        yield nodes
    finally:
        nodes.stop()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(root, ignore_errors=True)


def finished(out: Path) -> int:
    """Cells written to the run directory ``out`` so far."""
    return len(list((out / "cells").glob("*.parquet"))) if (out / "cells").is_dir() else 0


def wait_until(condition, what: str, timeout_s: float = STEP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout_s:g} s")
        time.sleep(0.2)


def computed_columns(cells: pd.DataFrame) -> list[str]:
    """The columns of ``cells`` computed from the estimates (not timings, hosts, ids)."""
    return [c for c in cells.columns if c not in MEASURED]


def compare(reference: Path, run: Path) -> str:
    """Check that ``run`` holds every cell of ``reference`` exactly once (one file under
    ``cells/`` and one row in ``cells.parquet`` per key), ``ok``, with every computed column
    and the per-coordinate table bit for bit the same.

    Raises:
        AssertionError: naming the first difference.
    """
    ref = pd.read_parquet(reference / "cells.parquet").set_index("cell_key").sort_index()
    got = pd.read_parquet(run / "cells.parquet")
    assert got["cell_key"].is_unique, f"{run}: a cell appears twice"
    assert finished(run) == len(ref), f"{run}: {finished(run)} cell files, not {len(ref)}"
    got = got.set_index("cell_key").sort_index()
    assert list(got.index) == list(ref.index), f"{run}: cells {set(ref.index) ^ set(got.index)}"
    assert (got["status"] == "ok").all(), f"{run}: {got[got['status'] != 'ok']['reason']}"
    columns = computed_columns(ref)
    pd.testing.assert_frame_equal(got[columns], ref[columns], check_exact=True)
    keys = ["cell_key", "param", "index"]
    coords_ref = pd.read_parquet(reference / "coords.parquet")
    coords_got = pd.read_parquet(run / "coords.parquet")
    coords_ref = coords_ref.sort_values(keys).reset_index(drop=True)
    coords_got = coords_got.sort_values(keys).reset_index(drop=True)
    coord_columns = computed_columns(coords_ref)
    pd.testing.assert_frame_equal(coords_got[coord_columns], coords_ref[coord_columns],
                                  check_exact=True)
    return (f"{len(got)} cells, each exactly once and ok; {len(columns)} computed columns and "
            f"{len(coords_got)} coordinate rows bit-identical to the local run")


def running_cells(nodes: Cluster, ip: str) -> int:
    """Cells running now on the node at ``ip`` (its processes titled ``ray::_ray_cell``)."""
    table = _processes()
    return sum("_ray_cell" in table[pid][1] for pid in nodes.node_pids(ip) if pid in table)


def driver(nodes: Cluster, out: Path, log: Path) -> subprocess.Popen:
    """``bench run SWEEP`` on the cluster into ``out``, output to ``log``."""
    with open(log, "a") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "bench", "run", *SWEEP, "--executor", "ray",
             "--ray-address", nodes.address, "--out", str(out)],
            env=nodes.env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path) -> None:
    """Wait for a driver; raise with its log's tail if it fails or overruns."""
    try:
        code = process.wait(STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise TimeoutError(f"bench run overran {STEP_TIMEOUT_S:g} s; {log}") from None
    if code != 0:
        raise RuntimeError(f"bench run exited {code}: {log.read_text()[-2000:]}")


def local_reference(work: Path) -> Path:
    """The sweep on the local executor, in this machine's ``bench`` process."""
    out, log = work / "local", work / "local.log"
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "w") as sink:
        code = subprocess.run([sys.executable, "-m", "bench", "run", *SWEEP, "--out", str(out)],
                              env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                              timeout=STEP_TIMEOUT_S).returncode
    if code != 0:
        raise RuntimeError(f"local bench run exited {code}: {log.read_text()[-2000:]}")
    return out


def worker_killed(nodes: Cluster, work: Path, reference: Path) -> str:
    """A sweep during which one worker node is SIGKILLed while it runs a cell."""
    out, log = work / "worker-killed", work / "worker-killed.log"
    victim = WORKER_IPS[0]
    process = driver(nodes, out, log)
    wait_until(lambda: (finished(out) >= 1 and running_cells(nodes, victim) > 0)
               or process.poll() is not None, f"a cell finished and one running on {victim}")
    if process.poll() is not None:
        raise RuntimeError(f"the sweep ended before a cell ran on {victim}: {log}")
    in_flight, done = running_cells(nodes, victim), finished(out)
    killed = nodes.kill_node(victim)
    finish(process, log)
    return (f"worker node {victim} SIGKILLed ({killed} processes) with {in_flight} cell(s) "
            f"running on it and {done} finished: " + compare(reference, out))


def head_restarted(nodes: Cluster, work: Path, reference: Path) -> str:
    """A sweep whose driver is SIGKILLed after its first cells; then every node, the head
    first, is SIGKILLed and started again, and the sweep resumed into the same directory."""
    out, log = work / "head-restarted", work / "head-restarted.log"
    process = driver(nodes, out, log)
    wait_until(lambda: finished(out) >= 2 or process.poll() is not None, "two cells written")
    process.kill()
    process.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.parquet")}
    if len(before) == len(pd.read_parquet(reference / "cells.parquet")):
        raise RuntimeError("the sweep finished before its driver was killed: nothing to resume")
    nodes.stop()
    for ip in (HEAD_IP, *WORKER_IPS):
        nodes.start_node(ip)
    resumed = driver(nodes, out, log)
    finish(resumed, log)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.parquet")}
    redone = [name for name, mtime in before.items() if after.get(name) != mtime]
    assert not redone, f"the resume rewrote finished cells {redone}"
    return (f"driver SIGKILLed after {len(before)} cells, head and workers SIGKILLed and "
            f"restarted, sweep resumed ({len(before)} cells kept, not redone): "
            + compare(reference, out))


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios and print one line per result; exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the run directories and logs here (default: a temporary "
                        "directory, removed)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="gradbench-ray-runs-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        reference = local_reference(work)
        with cluster() as nodes:
            print(f"cluster up: head {nodes.address}, workers {', '.join(WORKER_IPS)} "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
            print("1. " + worker_killed(nodes, work, reference), flush=True)
            print("2. " + head_restarted(nodes, work, reference), flush=True)
    except (AssertionError, RuntimeError, TimeoutError, subprocess.SubprocessError) as err:
        print(f"FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
