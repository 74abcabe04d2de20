"""What a trial is scored on: metric names and directions from the config, and a job's return turned
into Optuna's (state, values)."""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import TrialState

from rnnlab.errors import ConfigError

from .config import KEY

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple, ListConfig)) else [v]


def _direction(d: Any) -> str:
    name = d.name if isinstance(d, enum.Enum) else str(d)  # hydra-optuna-sweeper's Direction enum
    if name not in DIRECTIONS:
        raise ConfigError(f"{KEY}.direction", f"unknown direction {name!r}", DIRECTIONS)
    return name


@dataclass
class Objectives:
    """``names``: keys of the dict the task returns; with ``from_return`` the task returns the
    value(s) itself, as hydra-optuna-sweeper expected (a number, or a sequence of numbers for several
    directions), and ``names`` are only labels."""

    names: list[str]
    directions: list[str]
    from_return: bool = False

    @classmethod
    def from_config(cls, objective: Any, direction: Any, task_cfg: DictConfig) -> Objectives:
        directions = None if direction is None else [_direction(d) for d in _as_list(direction)]
        if objective is not None and _as_list(objective):
            names = [str(o) for o in _as_list(objective)]
        elif (monitor := OmegaConf.select(task_cfg, "monitor", default=None)) is not None:
            names = [str(monitor)]
        else:  # a generic Hydra app: its return value, one per direction
            n = len(directions or [None])
            return cls(["value"] if n == 1 else [f"value_{i}" for i in range(n)], directions or ["minimize"], True)
        if directions is None:
            mode = OmegaConf.select(task_cfg, "monitor_mode", default="min")
            directions = ["maximize" if mode == "max" else "minimize"] * len(names)
        if len(directions) != len(names):
            raise ConfigError(
                f"{KEY}.direction",
                f"{len(directions)} direction(s) for {len(names)} objective(s) {names}; give one per objective",
            )
        return cls(names, directions)

    def outcome(self, ret: JobReturn) -> tuple[TrialState, list[float] | None, str | None]:
        """``(state, values, error)`` of a finished job."""
        # Not ``ret.return_value``: on failure it re-raises and writes a line to stderr.
        if ret.status != JobStatus.COMPLETED:
            e = ret._return_value
            if isinstance(e, optuna.TrialPruned):
                return TrialState.PRUNED, None, None
            log.error("trial failed: %s: %s", type(e).__name__, e, exc_info=e)
            return TrialState.FAIL, None, f"{type(e).__name__}: {e}"
        result = ret.return_value
        if self.from_return:
            if isinstance(result, Mapping):
                return TrialState.FAIL, None, f"the task returned a dict; set {KEY}.objective to one of its keys"
            raw = _as_list(result) if len(self.names) > 1 else [result]
            if len(raw) != len(self.names):
                return TrialState.FAIL, None, f"the task returned {result!r}, expected {len(self.names)} values"
            named: Mapping[str, Any] = dict(zip(self.names, raw, strict=True))
        elif not isinstance(result, Mapping):
            return TrialState.FAIL, None, f"the task returned {type(result).__name__}, not a dict of metrics"
        else:
            named = result
        values = []
        for name in self.names:
            if name not in named:
                have = ", ".join(sorted(map(str, named))) or "(none)"
                return TrialState.FAIL, None, f"objective {name!r} not in the task's metrics: {have}"
            try:
                value = float(named[name])
            except (TypeError, ValueError):
                return TrialState.FAIL, None, f"objective {name!r} is {named[name]!r}, not a number"
            if not math.isfinite(value):
                return TrialState.FAIL, None, f"objective {name!r} is {value}"
            values.append(value)
        return TrialState.COMPLETE, values, None

    def outcome_of(self, rets: Sequence[JobReturn]) -> tuple[TrialState, list[float] | None, str | None]:
        """``(state, values, error)`` of a trial run once per seed: the mean of each objective over
        its runs; FAIL if any run failed (its error), PRUNED if any was pruned."""
        outcomes = [self.outcome(r) for r in rets]
        for state in (TrialState.FAIL, TrialState.PRUNED):
            for i, (s, _, error) in enumerate(outcomes):
                if s == state:
                    return s, None, (f"run {i + 1} of {len(rets)}: {error}" if error and len(rets) > 1 else error)
        columns = zip(*(values for _, values, _ in outcomes if values is not None), strict=True)
        return TrialState.COMPLETE, [math.fsum(c) / len(rets) for c in columns], None

    def baselines_of(self, rets: Sequence[JobReturn]) -> dict[str, float]:
        """``baselines`` averaged over a trial's runs (the baselines' scores differ by seed only where
        the data does)."""
        found = [self.baselines(r) for r in rets]
        keys = set.intersection(*(set(f) for f in found)) if found else set()
        return {k: math.fsum(f[k] for f in found) / len(found) for k in sorted(keys)}

    def baselines(self, ret: JobReturn) -> dict[str, float]:
        """The baselines' values of the first objective in a completed job's metrics:
        ``{"baseline/<name>/test/rmse": value}`` for objective ``test/rmse``; {} for anything else."""
        result = ret._return_value if ret.status == JobStatus.COMPLETED else None
        if self.from_return or not isinstance(result, Mapping):
            return {}
        suffix = "/" + self.names[0]
        return {
            str(k): float(v)
            for k, v in result.items()
            if str(k).startswith("baseline/") and str(k).endswith(suffix) and str(k).count("/") > 2
        }

    def describe(self, values: Sequence[float]) -> str:
        return ", ".join(f"{o}={v:.6g}" for o, v in zip(self.names, values, strict=True))
