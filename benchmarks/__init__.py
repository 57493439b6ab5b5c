"""asv suites of gradbench: speed, memory and estimator quality, tracked across commits.

Run them with ``asv run`` from the repository root (see README.md); every suite
is parametrized over the estimator registry and the problems of ``benchmarks.common``.
"""
