"""Config schema of the sweeper, registered as ``hydra/sweeper: optuna``, and its sampler options
``hydra/sweeper/sampler: tpe | random | cmaes | nsgaii | motpe | grid`` with hydra-optuna-sweeper
1.2's names, arguments and defaults (the plugin shipped with Hydra 1.2/1.3, on Optuna 2.10).
No heavy imports here: Hydra scans this module at start-up.

No ``from __future__ import annotations``: Hydra's plugin scanner runs this module before it is in
``sys.modules``, where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore

KEY = "hydra.sweeper"
# ``storage`` when it is not set: a SQLite study beside MLflow's store that resumes. ``storage: null``
# is hydra-optuna-sweeper's in-memory study, so the default cannot be None.
STORAGE_AUTO = "auto"


# ----------------------------------------------------------------------------- sampler options


@dataclass
class TPESamplerConfig:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    consider_prior: bool = True
    prior_weight: float = 1.0
    consider_magic_clip: bool = True
    consider_endpoints: bool = False
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    warn_independent_sampling: bool = True


@dataclass
class RandomSamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    independent_sampler: Any = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: Any = None
    inc_popsize: int = 2
    use_separable_cma: bool = False
    source_trials: Any = None


@dataclass
class NSGAIISamplerConfig:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Any = None


@dataclass
class MOTPESamplerConfig:
    """Optuna 4 removed MOTPESampler; the sweeper builds a TPESampler (it handles several
    objectives) and passes ``n_ehvi_candidates`` as ``n_ei_candidates``."""

    _target_: str = "optuna.samplers.MOTPESampler"
    seed: int | None = None
    consider_prior: bool = True
    prior_weight: float = 1.0
    consider_magic_clip: bool = True
    consider_endpoints: bool = False
    n_startup_trials: int = 10
    n_ehvi_candidates: int = 24


@dataclass
class GridSamplerConfig:
    _target_: str = "optuna.samplers.GridSampler"
    # search_space is built from the params when the sweep starts
    _partial_: bool = True


SAMPLER_OPTIONS: dict[str, type] = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "motpe": MOTPESamplerConfig,
    "grid": GridSamplerConfig,
}


def option_defaults(option: type) -> dict[str, Any]:
    """The arguments of a sampler option at their defaults (``_target_`` and ``_partial_`` left out)."""
    out = {}
    for f in fields(option):
        if not f.name.startswith("_"):
            out[f.name] = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
    return out


def _sampler_node() -> dict[str, Any]:
    # rnnlab's short form (``name`` picks an option above; any other key is an argument of it), with
    # the common keys present so that ``hydra.sweeper.sampler.seed=0`` works without ``+``. None: unset.
    return {
        "name": None,
        "seed": None,
        "n_startup_trials": None,
        "multivariate": None,
        "constant_liar": None,
        "population_size": None,
        "kwargs": {},
    }


def _pruner_node() -> dict[str, Any]:
    # rnnlab's pruner by ``name`` (none, median, percentile, successive_halving, hyperband) or any
    # ``optuna.pruners`` class by ``_target_``; arguments by Optuna's names, None: Optuna's default.
    return {
        "name": None,
        "n_startup_trials": None,
        "n_warmup_steps": None,
        "interval_steps": None,
        "n_min_trials": None,
        "percentile": None,
        "min_resource": None,
        "max_resource": None,
        "reduction_factor": None,
        "min_early_stopping_rate": None,
        "bootstrap_count": None,
    }


# ----------------------------------------------------------------------------- the sweeper


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.rnnlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # The sweeper builds sampler and pruner itself, after checking them.
    _recursive_: bool = False
    # ``_self_`` first: a sampler option chosen with ``hydra/sweeper/sampler=...`` lands on top of the
    # short-form node below.
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": None}])

    # --- hydra-optuna-sweeper's keys, with its meaning

    # A sampler option, an inline ``{_target_: optuna.samplers.X, ...}``, rnnlab's ``{name: X, ...}``,
    # or only arguments (``{seed: 123}``): the ``tpe`` option.
    sampler: Any = field(default_factory=_sampler_node)
    # "minimize" / "maximize", or a list, one per objective; None: from the task's ``monitor_mode``.
    direction: Any = None
    # An SQLAlchemy URL or ``journal:///path.log``; null: an in-memory study (no resume);
    # "auto": ``optuna.db`` beside MLflow's SQLite store (else in the working directory).
    storage: str | None = STORAGE_AUTO
    # None: the task's ``logger.experiment_name`` (else the job name).
    study_name: str | None = None
    # With a persistent storage, the total number of trials in the study (across resumes and workers):
    # FAIL trials of a crashed process do not count (their slot is re-run), trials that raised do.
    n_trials: int = 20
    # Trials asked together and launched together through Hydra's launcher.
    n_jobs: int = 1
    # The sweep stops once more than max_failure_rate * n_trials trials have raised.
    max_failure_rate: float = 0.25
    # Deprecated dict form: {key: {type: int|float|categorical, low, high, step, log, choices}}; used
    # only while params is empty (there: null). Not null here, so that it can be set from the command line.
    search_space: dict[str, Any] = field(default_factory=dict)
    # Search space: {key: "interval(1e-4, 1e-2)", ...}.
    params: dict[str, Any] = field(default_factory=dict)
    # ``module.function(cfg, trial)`` called for each trial to suggest more params (define-by-run).
    custom_search_space: str | None = None

    # --- rnnlab's own keys

    # Metric name(s) from the dict the task returns; None: the task's ``monitor`` key, and if the task
    # config has none, the task's return value itself (a number, or a list for several directions).
    objective: Any = None
    pruner: Any = field(default_factory=_pruner_node)
    # Worker processes on this machine, each running the same trial loop on the shared storage.
    n_workers: int = 1
    # Liveness of running trials: each worker stamps its trials every heartbeat_interval seconds; a
    # RUNNING trial whose stamp is older than grace_period (or whose local process is gone) is FAIL.
    heartbeat_interval: float = 10.0
    grace_period: float = 60.0
    # Seeds per trial: N (seeds 0..N-1) or a list; each trial runs once per seed (``seed=``) and its
    # value is the mean over them. None: one run per trial at the config's seed. ``seeds=N`` on the
    # command line sets it when this sweeper is selected.
    seeds: Any = None
    # MLflow parent run per sweep (needs ``logger.tracking_uri`` in the task config) and its plots.
    mlflow: bool = True
    plots: bool = True


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="rnnlab")
for _name, _option in SAMPLER_OPTIONS.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_option, provider="rnnlab")
