"""Optuna pruning for a training job that the sweeper launched, in this process or anywhere else.

The sweeper passes a job its trial's identity (``trial.study_name``, ``trial.storage``,
``trial.number``); the job attaches to that trial through the shared storage, reports its monitored
metric once per validation epoch and stops with ``optuna.TrialPruned`` when the study's pruner says
so. The pruner's settings travel with the trial (system attr ``rnnlab:pruner``), so a job on another
machine prunes exactly as the sweeper would.

Importing this module is cheap: optuna is imported on first use, and ``PruningCallback`` (a
``pytorch_lightning.Callback``) is defined on first access, so the toy app and the sweeper can use
:class:`TrialReporter` without importing Lightning.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rnnlab import stores
from rnnlab.errors import ConfigError
from rnnlab.stores import normalize_url

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

PRUNER_ATTR = "rnnlab:pruner"  # trial system attr: {"name": ..., **args} or {"_target_": ..., **args}

# name -> Optuna class; "none" keeps every trial.
PRUNERS: dict[str, str] = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
}


def create_pruner(name: str, key: str = "hydra.sweeper.pruner", **kwargs: Any) -> optuna.pruners.BasePruner:
    """An Optuna pruner by our name (``median``, ``hyperband``, ...) with its own keyword arguments."""
    import optuna

    if name not in PRUNERS:
        raise ConfigError(key, f"unknown pruner {name!r}", PRUNERS)
    cls = getattr(optuna.pruners, PRUNERS[name])
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    for arg in kwargs:
        if arg not in accepted:
            raise ConfigError(f"{key}.{arg}", f"not an argument of pruner {name!r}", accepted or ["(no arguments)"])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(key, f"bad arguments for pruner {name!r}: {e}") from None


def pruner_from_spec(spec: Mapping[str, Any], key: str = "hydra.sweeper.pruner") -> optuna.pruners.BasePruner:
    """A pruner from ``{"name": ..., **args}`` (our names) or ``{"_target_": "optuna.pruners.X", **args}``
    (any Optuna pruner; an argument that is itself such a dict, e.g. PatientPruner's
    ``wrapped_pruner``, is built the same way)."""
    import optuna

    args = dict(spec)
    target, name = args.pop("_target_", None), args.pop("name", None)
    if target is None:
        return create_pruner(name or "none", key, **args)
    if name is not None:
        raise ConfigError(key, f"set pruner.name ({name!r}) or pruner._target_ ({target!r}), not both")
    prefix = "optuna.pruners."
    cls_name = str(target)[len(prefix) :] if str(target).startswith(prefix) else ""
    cls = getattr(optuna.pruners, cls_name, None) if cls_name else None
    if not isinstance(cls, type) or not issubclass(cls, optuna.pruners.BasePruner):
        valid = [n for n in dir(optuna.pruners) if n.endswith("Pruner") and n != "BasePruner"]
        raise ConfigError(f"{key}._target_", f"{target!r} is not an Optuna pruner", valid)
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    for arg, value in args.items():
        if arg not in accepted:
            raise ConfigError(f"{key}.{arg}", f"not an argument of {target}", accepted or ["(no arguments)"])
        if isinstance(value, Mapping) and "_target_" in value:
            args[arg] = pruner_from_spec(value, f"{key}.{arg}")
    try:
        with warnings.catch_warnings():  # PatientPruner, WilcoxonPruner: experimental, said in every job
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**args)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as e:
        raise ConfigError(key, f"bad arguments for {target}: {e}") from None


# Studies in this process's memory (``storage: null``), by the token that jobs get as trial.storage.
IN_MEMORY = "inmemory:"
_in_memory: dict[str, optuna.storages.BaseStorage] = {}


def register_in_memory(storage: optuna.storages.BaseStorage) -> str:
    """A ``trial.storage`` token for an in-memory storage, reachable by jobs in this process."""
    token = f"{IN_MEMORY}{os.getpid()}-{id(storage)}"
    _in_memory[token] = storage
    return token


def open_storage(url: str, **rdb_kwargs: Any) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: any SQLAlchemy URL (``sqlite:///``, ``postgresql://``, ...) or
    ``journal:///optuna.log`` (relative path) / ``journal:////abs/optuna.log`` for Optuna's journal
    file storage on a shared filesystem."""
    import optuna

    if url.startswith(IN_MEMORY):
        if url not in _in_memory:
            raise ConfigError("trial.storage", f"{url}: an in-memory study (storage: null) of another process")
        return _in_memory[url]
    path = stores.file_path(url) if url.startswith(stores.JOURNAL) else None
    if path is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("journal:"):
        raise ConfigError(
            "storage", f"bad journal URL {url!r}; use journal:///rel/path.log or journal:////abs/path.log"
        )
    return optuna.storages.RDBStorage(normalize_url(url), **rdb_kwargs)


class TrialReporter:
    """Reports a job's intermediate values to its Optuna trial through the shared storage.

    ``report(value, step)`` returns True when the trial should stop; ``check(value, step)`` raises
    ``optuna.TrialPruned`` instead. A value for a multi-objective study is not reported (Optuna
    cannot prune those).
    """

    def __init__(self, study_name: str, storage: str, number: int) -> None:
        self.study_name = study_name
        self.storage_url = storage
        self.number = int(number)
        self._trial: optuna.trial.Trial | None = None
        self._multi_objective = False

    @classmethod
    def from_config(cls, trial: Any) -> TrialReporter | None:
        """From the ``trial`` config node; None for a plain run (no ``trial.number``)."""
        if trial is None or getattr(trial, "number", None) is None:
            return None
        if not trial.study_name or not trial.storage:
            raise ConfigError("trial", "trial.number is set but trial.study_name or trial.storage is not")
        if str(trial.storage).startswith(IN_MEMORY) and trial.storage not in _in_memory:
            # storage: null with a launcher that runs jobs in other processes: nothing to report to
            log.warning("trial %s: no pruning; its in-memory study lives in the sweeper's process", trial.number)
            return None
        return cls(trial.study_name, trial.storage, trial.number)

    def _attach(self) -> optuna.trial.Trial:
        if self._trial is None:
            import optuna

            storage = open_storage(self.storage_url)
            study_id = storage.get_study_id_from_name(self.study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
            spec = storage.get_trial_system_attrs(trial_id).get(PRUNER_ATTR) or {"name": "none"}
            pruner = pruner_from_spec(spec)
            # The sampler is never used here; RandomSampler keeps attaching cheap.
            study = optuna.load_study(
                study_name=self.study_name,
                storage=storage,
                sampler=optuna.samplers.RandomSampler(),
                pruner=pruner,
            )
            self._multi_objective = len(study.directions) > 1
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    def report(self, value: float, step: int) -> bool:
        """Report ``value`` at ``step``; True if the pruner says stop."""
        trial = self._attach()
        if self._multi_objective:
            return False
        value = float(value)
        if math.isnan(value):
            # NaN never improves; Optuna's pruners treat it as worst, and a diverged run should stop.
            log.warning("trial %d: monitored value is NaN at step %d", self.number, step)
        trial.report(value, step)
        return trial.should_prune()

    def check(self, value: float, step: int) -> None:
        """Report and raise ``optuna.TrialPruned`` if the trial should stop."""
        if self.report(value, step):
            import optuna

            raise optuna.TrialPruned(f"trial {self.number} pruned at step {step} (value {value:.6g})")


def _define_callback() -> type:
    import pytorch_lightning as pl

    class PruningCallback(pl.Callback):
        """Reports ``trainer.callback_metrics[monitor]`` to the trial after each validation epoch;
        global rank 0 decides and broadcasts, and every rank raises ``optuna.TrialPruned``."""

        def __init__(self, trial: Any, monitor: str = "val/loss") -> None:
            super().__init__()
            self.monitor = monitor
            self._trial_cfg = trial
            self._reporter: TrialReporter | None = None
            self._warned = False

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            prune, message = False, ""
            if trainer.is_global_zero:
                metric = trainer.callback_metrics.get(self.monitor)
                if metric is None:
                    if not self._warned:
                        self._warned = True
                        log.warning(
                            "pruning: metric %r not logged; available: %s",
                            self.monitor,
                            ", ".join(sorted(trainer.callback_metrics)) or "(none)",
                        )
                else:
                    if self._reporter is None:
                        self._reporter = TrialReporter.from_config(self._trial_cfg)
                    value = float(metric)
                    step = trainer.current_epoch
                    if self._reporter is not None and self._reporter.report(value, step):
                        prune = True
                        message = f"trial {self._reporter.number} pruned at epoch {step} ({self.monitor}={value:.6g})"
            prune = trainer.strategy.broadcast(prune, src=0)
            if prune:
                import optuna

                message = trainer.strategy.broadcast(message, src=0)
                raise optuna.TrialPruned(message)

    return PruningCallback


_LAZY: dict[str, type] = {}


def __getattr__(name: str) -> Any:  # PEP 562: define the Lightning callback only when asked for
    if name == "PruningCallback":
        if name not in _LAZY:
            _LAZY[name] = _define_callback()
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
