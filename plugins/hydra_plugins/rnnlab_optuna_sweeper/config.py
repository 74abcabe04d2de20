"""Config schema of the sweeper, registered as ``hydra/sweeper: optuna``. No heavy imports here.

No ``from __future__ import annotations``: Hydra's plugin scanner runs this module before it is in
``sys.modules``, where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    """An Optuna sampler by name: ``tpe``, ``random``, ``cmaes``, ``grid``, ``nsgaii``."""

    name: str = "tpe"
    seed: int | None = None
    # Common arguments; None keeps Optuna's default. Anything else goes in ``kwargs``.
    n_startup_trials: int | None = None  # tpe, cmaes
    multivariate: bool | None = None  # tpe
    constant_liar: bool | None = None  # tpe: better spread with parallel workers
    population_size: int | None = None  # nsgaii, cmaes
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrunerConf:
    """An Optuna pruner by name: ``none``, ``median``, ``percentile``, ``successive_halving``,
    ``hyperband``. Arguments are Optuna's own; None keeps Optuna's default, and an argument the
    chosen pruner does not take is an error."""

    name: str = "none"
    n_startup_trials: int | None = None  # median, percentile
    n_warmup_steps: int | None = None  # median, percentile
    interval_steps: int | None = None  # median, percentile
    n_min_trials: int | None = None  # median, percentile
    percentile: float | None = None  # percentile
    min_resource: Any = None  # successive_halving, hyperband: int or "auto"
    max_resource: Any = None  # hyperband: int or "auto"
    reduction_factor: int | None = None  # successive_halving, hyperband
    min_early_stopping_rate: int | None = None  # successive_halving
    bootstrap_count: int | None = None  # successive_halving, hyperband


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.rnnlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"

    # Study identity. None: study_name = the task's ``logger.experiment_name`` (else the job name);
    # storage = ``sqlite:///optuna.db`` in the working directory, beside MLflow's default store.
    study_name: str | None = None
    storage: str | None = None

    # Total trials in the study, across resumes and workers; FAIL trials of a crashed process do not
    # count (their slot is re-run), trials that raised do.
    n_trials: int = 20
    # Worker processes on this machine, each running one trial at a time.
    n_jobs: int = 1

    # Metric name(s) from the task's returned dict; None: the task's ``monitor`` (``val/loss``).
    objective: Any = None
    # "minimize" / "maximize", one or a list matched to ``objective``; None: from ``monitor_mode``.
    direction: Any = None

    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)

    # The sweep stops with an error once more than max_failure_rate * n_trials trials have raised.
    max_failure_rate: float = 0.25

    # Search space, hydra-optuna-sweeper's syntax: {key: "interval(1e-4, 1e-2)", ...}.
    params: dict[str, Any] = field(default_factory=dict)

    # Liveness of running trials: each worker stamps its trial every heartbeat_interval seconds; a
    # RUNNING trial whose stamp is older than grace_period (or whose local process is gone) is FAIL.
    heartbeat_interval: float = 10.0
    grace_period: float = 60.0

    # MLflow parent run per sweep (needs ``logger.tracking_uri`` in the task config) and its plots.
    mlflow: bool = True
    plots: bool = True


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="rnnlab")
