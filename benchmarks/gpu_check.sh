#!/usr/bin/env bash
# The GPU check in one command (benchmarks/gpu_check.py): the CUDA-marked tests, a fixed set
# of cells on CPU and CUDA side by side with their statistics checked to agree, the asv
# suites on CUDA, one Markdown report (default results/gpu_check.md). Under 8 minutes on one
# GPU; exit 0 when everything passed. Without CUDA it says so in one line and exits 0.
#
#   benchmarks/gpu_check.sh [--report FILE] [--work DIR]     (PYTHON=... to pick the Python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec timeout --signal=TERM --kill-after=20 500 "$PY" -m benchmarks.gpu_check "$@"
