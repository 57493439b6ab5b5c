"""Measure one cell: R estimates of one estimator on one problem, their statistics against
the truth, timing and memory (docs/architecture.md)."""
