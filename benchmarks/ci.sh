#!/usr/bin/env bash
# Continuous-integration check of the asv suites: they must import, be well formed and run.
#
# Runs every benchmark once (asv --quick) in the current Python environment against the
# checkout this script belongs to, saving nothing; exits non-zero if a benchmark errors
# (asv run returns 2), so the suites cannot rot. Skipped pairs (NotImplementedError in
# setup) are not errors. Smoke mode (GRADBENCH_ASV_SMOKE=1, benchmarks/common.py): every
# benchmark over a representative subset of the estimators and three small problems, so
# that the check takes a minute or two however many estimators are registered.
#
# Usage: benchmarks/ci.sh [PYTHON]    (default: .venv/bin/python of the checkout)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${1:-$ROOT/.venv/bin/python}"
# asv drops PYTHONPATH in the benchmark processes unless it is passed as ASV_PYTHONPATH
export ASV_PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GRADBENCH_ASV_SMOKE=1

"$PYTHON" -m asv machine --yes --machine ci >/dev/null
"$PYTHON" -m asv check --python=same
"$PYTHON" -m asv run --quick --python=same --machine ci --dry-run --show-stderr
