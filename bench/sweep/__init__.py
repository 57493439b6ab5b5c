"""Run many cells: sweep specifications, executors, run directories, resuming, plugins
(docs/architecture.md, docs/sweeps.md)."""
