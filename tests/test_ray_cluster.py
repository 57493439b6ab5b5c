"""A sweep on a real three-node Ray cluster (benchmarks/ray_cluster.py) loses no cell and
redoes none when a worker node is SIGKILLed mid-sweep or the head is restarted before a
resume, and gives the local run's numbers bit for bit. Slow: three ``ray start`` nodes and
four sweeps, about 3 minutes on two cores."""

import importlib.util

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed"),
]


def test_sweep_survives_a_dead_worker_node_and_a_restarted_head(tmp_path, capsys):
    from benchmarks.ray_cluster import main

    assert main(["--keep", str(tmp_path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "1. worker node 127.0.0.3 SIGKILLed" in out
    assert "2. driver SIGKILLed after" in out
    assert out.count("each exactly once and ok") == 2
