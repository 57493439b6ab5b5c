"""The ``local`` executor: cells in the driver's process, one after another."""

from __future__ import annotations

from collections.abc import Collection, Iterator

import torch

from bench import env as environment
from bench.cell.spec import CellSpec
from bench.registry import current_registry
from bench.sweep.executors.base import Executor, Result, prepare_process, run_cell_guarded


class LocalExecutor(Executor):
    """Cells in the driver's process, one after another (the reference for timings)."""

    in_process = True

    def run(self, cells: Collection[CellSpec]) -> Iterator[Result]:
        saved = torch.get_num_threads()
        torch.set_num_threads(self.config.threads or 1)
        try:
            env, registry = environment.environment(self.device), current_registry()
            prepared = False
            for spec in cells:
                if not prepared:
                    prepare_process(self.device)
                    prepared = True
                yield run_cell_guarded(spec, self.run_id, env, registry)
        finally:
            torch.set_num_threads(saved)

    def close(self) -> None:
        """Nothing to release: the cells ran in this process."""
