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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnlab.errors import ConfigError

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

PRUNER_ATTR = "rnnlab:pruner"  # trial system attr: {"name": ..., **args}

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


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg (v3) to SQLAlchemy 2.1; use psycopg2 when only it is installed."""
    if url.startswith("postgresql://"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def open_storage(url: str, **rdb_kwargs: Any) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: any SQLAlchemy URL (``sqlite:///``, ``postgresql://``, ...) or
    ``journal:///optuna.log`` (relative path) / ``journal:////abs/optuna.log`` for Optuna's journal
    file storage on a shared filesystem."""
    import optuna

    if url.startswith("journal:///"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:///") :])
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
        return cls(trial.study_name, trial.storage, trial.number)

    def _attach(self) -> optuna.trial.Trial:
        if self._trial is None:
            import optuna

            storage = open_storage(self.storage_url)
            study_id = storage.get_study_id_from_name(self.study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
            spec = dict(storage.get_trial_system_attrs(trial_id).get(PRUNER_ATTR) or {"name": "none"})
            pruner = create_pruner(spec.pop("name"), **spec)
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
