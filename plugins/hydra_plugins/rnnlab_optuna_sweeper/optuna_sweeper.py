"""The Hydra Sweeper plugin class; the work happens in ``_impl`` (imported when a sweep starts)."""

from __future__ import annotations

import os
import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import OptunaSweeperConf


class OptunaSweeper(Sweeper):
    """Optuna sweeps from Hydra multirun. See ``docs/sweeps.md``."""

    def __init__(self, **kwargs: Any) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(**kwargs)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from rnnlab.errors import RnnlabError

        try:
            return self.sweeper.sweep(arguments)
        except RnnlabError as e:  # one line, as rnnlab's CLI reports its errors
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"rnnlab: error: {e}", file=sys.stderr)
            sys.exit(e.exit_code)


__all__ = ["OptunaSweeper", "OptunaSweeperConf"]
