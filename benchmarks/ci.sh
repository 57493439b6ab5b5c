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

# The documented sequence that records results for the current commit and publishes them
# (README, "Continuous benchmarking with asv"): without --set-commit-hash, a run with
# --python=same saves nothing and asv publish builds an empty site. Smoke-checked on one
# cheap benchmark at one parameter combination (asv matches --bench against
# "name(param, ...)"; the dry run above has already run every combination), in a scratch
# results and html directory (so the user's .asv stays as it was), publishing the history
# of HEAD whatever branch it is on.
COMMIT="$(git rev-parse HEAD)"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
sed -e "s|\"results_dir\": \"[^\"]*\"|\"results_dir\": \"$SCRATCH/results\"|" \
    -e "s|\"html_dir\": \"[^\"]*\"|\"html_dir\": \"$SCRATCH/html\"|" \
    -e "s|\"repo\": \"[^\"]*\"|\"repo\": \"$ROOT\"|" \
    -e "s|\"branches\": \[[^]]*\]|\"branches\": [\"$COMMIT\"]|" \
    -e "s|\"benchmark_dir\": \"[^\"]*\"|\"benchmark_dir\": \"$ROOT/benchmarks\"|" \
    asv.conf.json > "$SCRATCH/asv.conf.json"
"$PYTHON" -m asv machine --yes --machine ci --config "$SCRATCH/asv.conf.json" >/dev/null
"$PYTHON" -m asv run --quick --python=same --machine ci --config "$SCRATCH/asv.conf.json" \
    --set-commit-hash "$COMMIT" --show-stderr \
    --bench "OneEstimate\.time_estimate\('reinforce', 'bernoulli_toy'\)"
"$PYTHON" -m asv publish --config "$SCRATCH/asv.conf.json" >/dev/null
"$PYTHON" - "$SCRATCH" "$COMMIT" <<'PY'
import json, pathlib, sys
scratch, commit = pathlib.Path(sys.argv[1]), sys.argv[2]
saved = list((scratch / "results" / "ci").glob(f"{commit[:8]}-*.json"))
assert saved, f"asv saved no results for {commit[:8]} under {scratch / 'results'}"
graphs = list((scratch / "html" / "graphs").rglob("*.json"))
assert graphs, "asv publish wrote no graphs"
points = sum(len(json.loads(g.read_text())) for g in graphs)
assert points, "asv publish wrote graphs without results"
print(f"asv: results saved for {commit[:8]} and published ({len(graphs)} graphs, {points} points)")
PY
