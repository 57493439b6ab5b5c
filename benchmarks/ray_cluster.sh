#!/usr/bin/env bash
# A real three-node Ray cluster on this machine (loopback addresses 127.0.0.2-4, one CPU per
# node); a sweep on it survives a SIGKILLed worker node and a restarted head with numbers
# bit-identical to a local run. What it does: benchmarks/ray_cluster.py. About 3-4 minutes;
# at most 15 (then it stops, and its Ray processes with it). Exit 0 when both scenarios pass.
#
#   benchmarks/ray_cluster.sh [--keep DIR]    # keep run directories and logs in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec timeout --signal=TERM --kill-after=30 900 "$PY" -m benchmarks.ray_cluster "$@"
