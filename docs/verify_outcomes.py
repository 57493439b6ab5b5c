"""Count the outcomes of ``bench verify --quick`` over every registered estimator.

The rate of ``inconclusive`` cells in docs/verify.md comes from this script::

    python docs/verify_outcomes.py --json results/verify_outcomes.json
    python docs/verify_outcomes.py --estimator reinforce,unordered_set   # a subset

Each estimator runs at its test example's options (``tests/examples.py``, as
``tests/test_verify.py`` does), ``quick=True`` and otherwise verify's defaults (seed 0,
alpha 1e-3, power 0.05 relative to each coordinate's scale, R at most 200 000). It prints one
line per estimator (its verdict counts and wall time), the inconclusive cells by name, and the
share of checked cells (verdict ``ok``, ``BIASED``, ``OFF TARGET`` or ``inconclusive``) that
ended ``inconclusive``.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

from bench.verify import verify_one
from bench.verify.report import CHECKED
from estimators import ESTIMATORS
from tests.examples import ESTIMATOR_EXAMPLES


def measure(names: list[str]) -> list[dict]:
    """One row per cell: estimator, setting, K, R, verdict, detectable bias, control."""
    rows = []
    for name in names:
        start = time.perf_counter()
        report = verify_one(name, ESTIMATOR_EXAMPLES[name].get("options"), quick=True)
        seconds = time.perf_counter() - start
        counts = collections.Counter(c.verdict for c in report.cells)
        print(f"{name}: {dict(counts)} ({seconds:.0f} s)", flush=True)
        for cell in report.cells:
            row = cell.row()
            rows.append({"estimator": name, "problem": row["problem"], "K": row["K"],
                         "R": row["R"], "verdict": row["verdict"], "detects": row["detects"],
                         "cv": row["cv"], "seconds": seconds})
    return rows


def summarise(rows: list[dict]) -> str:
    checked = [r for r in rows if r["verdict"] in CHECKED]
    weak = [r for r in checked if r["verdict"] == "inconclusive"]
    failed = [r for r in checked if r["verdict"] in ("BIASED", "OFF TARGET")]
    lines = [f"  inconclusive: {r['estimator']} on {r['problem']} K={r['K']} R={r['R']} "
             f"detects {r['detects']:.3g}" for r in weak]
    share = len(weak) / max(len(checked), 1)
    lines.append(f"{len(weak)} of {len(checked)} checked cells inconclusive ({share:.1%}); "
                 f"{len(failed)} failed; {len(rows)} cells in all")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimator", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--json", default=None, help="also write the cells' rows here")
    args = parser.parse_args()
    names = args.estimator.split(",") if args.estimator else list(ESTIMATORS)
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        parser.error(f"unknown estimator(s) {', '.join(unknown)}; valid: {', '.join(ESTIMATORS)}")
    rows = measure(names)
    print(summarise(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
