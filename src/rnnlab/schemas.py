"""Typed schemas for every config option. YAML under ``conf/`` only sets values.

Plugin schemas subclass :class:`PluginConfig`; their ``__post_init__`` checks value ranges, so
``OmegaConf.to_object`` on a composed config validates it (see :func:`rnnlab.validation.validate`).
Nothing here imports torch.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import II, MISSING

from rnnlab import stores
from rnnlab.errors import ConfigError
from rnnlab.trainer_flags import ACCELERATORS, PRECISIONS, STRATEGIES, check_devices

# ----------------------------------------------------------------------------- checks


def check_range(
    obj: Any,
    name: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> None:
    """Raise ConfigError naming ``name`` unless ``getattr(obj, name)`` lies in the given bounds."""
    value = getattr(obj, name)
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value}")
    for bound, ok, word in (
        (ge, lambda v, b: v >= b, ">="),
        (gt, lambda v, b: v > b, ">"),
        (le, lambda v, b: v <= b, "<="),
        (lt, lambda v, b: v < b, "<"),
    ):
        if bound is not None and not ok(value, bound):
            raise ConfigError(name, f"must be {word} {bound}, got {value}")


def check_fractions(obj: Any, *, leave_training: bool = True) -> None:
    """``obj.val_fraction`` and ``obj.test_fraction`` in (0, 1) and, with ``leave_training``,
    summing to less than 1 (the rest is the training split)."""
    check_range(obj, "val_fraction", gt=0, lt=1)
    check_range(obj, "test_fraction", gt=0, lt=1)
    if leave_training and obj.val_fraction + obj.test_fraction >= 1:
        raise ConfigError(
            "test_fraction",
            f"val_fraction + test_fraction must be < 1, got {obj.val_fraction} + {obj.test_fraction}",
        )


def check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ConfigError(name, f"invalid value {value!r}", choices)


@dataclass
class PluginConfig:
    """Base of every plugin schema: the one home of the plugin's defaults.

    ``name`` is the registry key; ``impl`` is ``"module:Class"``, imported only when a run builds the
    plugin. rnnlab registers each schema as an option of its config group (``backbone=NAME``), so a
    plugin needs no YAML. ``__post_init__`` checks value ranges (``check_range``, ``check_choice``)
    and runs once per run, before anything is built.
    """

    name: str = MISSING
    impl: ClassVar[str] = ""

    def kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments: every field but ``name``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


@dataclass
class DataConfig(PluginConfig):
    """Base of data module schemas. ``metrics()`` names what the task reports (without loading any
    data), so ``monitor`` and a sweep's ``objective`` are checked before a run starts."""

    def metrics(self) -> tuple[str, ...]:
        """Metric names the task logs per split (``val/<name>``, ``test/<name>``); ``loss`` always."""
        return ("loss",)

    def scores(self) -> tuple[str, ...]:
        """The names the data module's ``score()`` gives on the test split, for the model and each
        baseline (``test/<name>``, ``baseline/<baseline>/test/<name>``); () if it scores nothing."""
        return ()


@dataclass
class SeriesConfig(DataConfig):
    """Sliding windows over a series: ``window`` steps in, the next ``horizon`` target values out.

    The schema of :class:`rnnlab.series.SeriesDataModule`: subclass both for a data module on a
    series. The series is split chronologically (train | val | test); the scaler is fitted on the
    training part only; metrics are in the series' original units.
    """

    window: int = 48
    horizon: int = 1
    stride: int = 1
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    scaling: str = "standard"
    # steps per seasonal cycle (24 for hourly data with a daily cycle); 0: none. MASE is scaled by
    # the seasonal naive error at this lag (1 without a season); seasonal_naive forecasts with it.
    season: int = 0
    batch_size: int = 64
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        check_range(self, "window", ge=1)
        check_range(self, "horizon", ge=1)
        check_range(self, "stride", ge=1)
        check_fractions(self)
        check_choice(self, "scaling", ("standard", "minmax", "none"))
        check_range(self, "season", ge=0)
        check_range(self, "batch_size", ge=1)
        check_range(self, "eval_batch_size", ge=1)

    def metrics(self) -> tuple[str, ...]:
        return ("loss", "mae", "rmse")

    def scores(self) -> tuple[str, ...]:
        steps = (
            [f"{m}_step{k}" for k in range(1, self.horizon + 1) for m in ("mae", "rmse")] if self.horizon > 1 else []
        )
        return ("mae", "rmse", "mase", "smape", *steps)


@dataclass
class SequenceConfig(DataConfig):
    """Whole sequences as samples (synthetic tasks, digits, text, UCR sets): the schema of
    :class:`rnnlab.sequences.SequenceDataModule`; subclass both. ``kind`` (a class variable, one of
    :data:`rnnlab.task.KINDS`) says what the task logs and scores before any data is loaded."""

    batch_size: int = 64
    eval_batch_size: int = 512
    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_range(self, "batch_size", ge=1)
        check_range(self, "eval_batch_size", ge=1)

    def task_kind(self) -> str:
        """The kind of task these options make: ``kind``, unless an option changes it (override)."""
        return self.kind

    def metrics(self) -> tuple[str, ...]:
        from rnnlab.task import KIND_METRICS

        return KIND_METRICS[self.task_kind()]

    def scores(self) -> tuple[str, ...]:
        from rnnlab.task import KIND_SCORES

        return KIND_SCORES[self.task_kind()]


@dataclass
class BaselineConfig(PluginConfig):
    """Base of baseline schemas (:mod:`rnnlab.baseline`): ``baseline=[persistence,linear_ar]`` picks
    them, ``baseline.<name>.<option>=...`` sets their options."""


# ----------------------------------------------------------------------------- optimizers


@dataclass
class OptimizerConfig:
    """A torch optimizer by ``_target_``; built with ``hydra.utils.instantiate(..., params)``."""

    _target_: str = MISSING
    _partial_: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_range(self, "lr", gt=0)
        check_range(self, "weight_decay", ge=0)


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "momentum", ge=0, lt=1)


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


# ----------------------------------------------------------------------------- LR schedulers


@dataclass
class SchedulerConfig:
    """An LR scheduler by ``_target_``; ``interval`` and ``monitor`` go to Lightning, the rest to torch."""

    _target_: str = MISSING
    _partial_: bool = True
    interval: str = "epoch"
    monitor: str | None = None

    def __post_init__(self) -> None:
        check_choice(self, "interval", ("epoch", "step"))


@dataclass
class CosineConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.CosineAnnealingLR"
    T_max: int = II("trainer.max_epochs")
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "T_max", ge=1)


@dataclass
class StepConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.StepLR"
    step_size: int = 10
    gamma: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "step_size", ge=1)
        check_range(self, "gamma", gt=0, le=1)


@dataclass
class PlateauConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.ReduceLROnPlateau"
    monitor: str | None = II("monitor")
    mode: str = II("monitor_mode")
    factor: float = 0.5
    patience: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "mode", ("min", "max"))
        check_range(self, "factor", gt=0, lt=1)
        check_range(self, "patience", ge=0)


# ----------------------------------------------------------------------------- trainer


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    # 10, measured (scripts/bench_forecasting.py, 8 real series): better than 5 on electricity (RMSE
    # 166.6 vs 168.0) and SF temperature (0.0640 vs 0.0650), the same on the other six, at ~1.5x epochs
    patience: int = 10
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        check_range(self, "patience", ge=0)
        check_range(self, "min_delta", ge=0)


@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` flags by their own names (a subset; the rest keep Lightning's defaults)."""

    max_epochs: int = 30
    min_epochs: int = 1
    # a wall-clock budget for training, in minutes (None: none): training stops at the end of the
    # step that crosses it, then the best checkpoint is tested as after the last epoch
    max_time: float | None = None
    accelerator: str = "auto"
    devices: Any = "auto"  # int, list of ids, or "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    # Clipping is on by default: exploding gradients are the first failure of a recurrent net.
    gradient_clip_val: float | None = 1.0
    gradient_clip_algorithm: str = "norm"
    accumulate_grad_batches: int = 1
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    limit_test_batches: float = 1.0
    val_check_interval: float = 1.0
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 50
    num_sanity_val_steps: int = 0
    deterministic: bool = True
    # None: a live bar on a terminal, one line per epoch otherwise, nothing under CI=true (rnnlab.progress)
    enable_progress_bar: bool | None = None
    enable_model_summary: bool = False
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)

    def __post_init__(self) -> None:
        check_choice(self, "precision", PRECISIONS)
        check_choice(self, "accelerator", ACCELERATORS)
        check_choice(self, "strategy", STRATEGIES)
        check_devices(self.devices)
        if self.accelerator == "cpu" and not isinstance(self.devices, int) and self.devices != "auto":
            raise ConfigError("devices", f"with accelerator 'cpu' give a count of processes, got {self.devices!r}")
        check_range(self, "max_epochs", ge=1)
        check_range(self, "min_epochs", ge=0)
        check_range(self, "max_time", gt=0)
        if self.min_epochs > self.max_epochs:
            raise ConfigError("min_epochs", f"must be <= max_epochs ({self.max_epochs}), got {self.min_epochs}")
        check_choice(self, "gradient_clip_algorithm", ("norm", "value"))
        check_range(self, "gradient_clip_val", ge=0)
        check_range(self, "accumulate_grad_batches", ge=1)
        check_range(self, "num_nodes", ge=1)
        for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "val_check_interval"):
            check_range(self, name, gt=0)
        check_range(self, "log_every_n_steps", ge=1)
        check_range(self, "check_val_every_n_epoch", ge=1)


# ----------------------------------------------------------------------------- tracking


@dataclass
class LoggerConfig:
    """MLflow tracking. ``tracking_uri`` is a SQLite file by default; an ``http://`` URI names a server."""

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment_name: str = "rnnlab"
    run_name: str | None = None
    log_model: bool = True
    log_checkpoint: bool = True
    # Metrics are buffered and sent with one log_batch call every ``flush_every_n_steps`` steps and
    # at each epoch end: a synchronous MLflow call per step made a small model 5x slower.
    flush_every_n_steps: int = 100
    # Records go through a local spool in the run's output dir, sent by a background thread: training
    # never waits on the tracker. A run that ends while the server does not answer waits this many
    # seconds for it, then leaves its spool for `python -m rnnlab sync`.
    sync_timeout: float = 60.0
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stores.check_scheme(self.tracking_uri, "tracking_uri", stores.TRACKING_SCHEMES)
        if not self.experiment_name:
            raise ConfigError("experiment_name", "must not be empty")
        check_range(self, "flush_every_n_steps", ge=1)
        check_range(self, "sync_timeout", ge=0)


@dataclass
class DiagnosticsConfig:
    """Gradient flow through time (``rnnlab.diagnostics``): off by default. When on, every
    ``every_n_epochs`` epochs (and after the last) ||dL/dh_t|| per step and layer on a fixed batch of
    ``samples`` training sequences, the recurrent weights' largest singular values and saturation;
    on every step, parameter gradient norms and whether clipping fired."""

    enabled: bool = False
    every_n_epochs: int = 1
    samples: int = 32  # a forward and backward through every step of these, by explicit cells, per measurement

    def __post_init__(self) -> None:
        check_range(self, "every_n_epochs", ge=1)
        check_range(self, "samples", ge=1)


@dataclass
class TrialConfig:
    """Set by the Optuna sweeper for each trial it launches; empty for a plain run."""

    study_name: str | None = None
    storage: str | None = None
    number: int | None = None
    mlflow_parent_run_id: str | None = None


# ----------------------------------------------------------------------------- the model and the run


@dataclass
class ModelConfig:
    """The head on top of the backbone; its output size and readout come from the TaskSpec.

    The other options are for forecasting tasks only (``rnnlab.model.SequenceNet`` has the details);
    each lives inside the network, which still takes the scaled windows and returns original units.
    """

    head_hidden: int = 0  # 0: a single linear layer; >0: Linear-ReLU-Linear with this width
    # The forecasting defaults were chosen by measurement (docs/forecasting.md): with all three on,
    # the LSTM beat linear AR on 8 of 8 real series; "auto" / None: on for a forecasting task
    # (``TaskSpec.forecast``), off for any other.
    # level: predict the target values; change: their change from the last observed value
    target: str = "auto"
    # none, or revin: reversible instance normalization (each window by its own mean and std)
    normalize: str = "none"
    # the backbone reads first differences of the inputs (needs target=change or normalize=revin)
    difference: bool | None = None
    # a linear map from the window's lags to the horizon, added to the output (LSTNet's highway),
    # fixed at the ridge fit of the linear AR baseline, the head at zero: the net learns the residual
    linear_skip: bool | None = None
    # Truncated BPTT (rnnlab.model.SequenceModel): each training sequence is cut into chunks of this
    # many steps, the state carried from chunk to chunk but not its gradient, one optimizer step per
    # chunk. None: full backpropagation through the whole sequence.
    tbptt_steps: int | None = None

    def __post_init__(self) -> None:
        check_range(self, "head_hidden", ge=0)
        if self.tbptt_steps is not None and (isinstance(self.tbptt_steps, bool) or self.tbptt_steps < 1):
            raise ConfigError("tbptt_steps", f"must be a positive number of steps or null, got {self.tbptt_steps}")
        check_choice(self, "target", ("auto", "level", "change"))
        check_choice(self, "normalize", ("none", "revin"))
        if self.difference and self.target == "level" and self.normalize != "revin":
            raise ConfigError(
                "difference",
                "the backbone then reads changes only, and the level is lost: set model.target=change "
                "(predict the change from the last value) or model.normalize=revin (add the window's mean back)",
            )

    def resolved(self, forecast: bool) -> ModelConfig:
        """The options for a task: "auto" and None become the forecasting defaults (target=change,
        difference and linear_skip on) for a forecasting task, and off for any other."""
        target = self.target if self.target != "auto" else ("change" if forecast else "level")
        return ModelConfig(
            head_hidden=self.head_hidden,
            target=target,
            normalize=self.normalize,
            difference=forecast if self.difference is None else self.difference,
            linear_skip=forecast if self.linear_skip is None else self.linear_skip,
            tbptt_steps=self.tbptt_steps,
        )


@dataclass
class TrainConfig:
    """The root of ``conf/train.yaml``."""

    backbone: Any = MISSING
    data: Any = MISSING
    regularizer: dict[str, Any] = field(default_factory=dict)
    # Reference methods scored beside the model on the same test windows (those that fit the task)
    baseline: dict[str, Any] = field(default_factory=dict)
    optimizer: Any = MISSING
    scheduler: Any = None
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    seed: int = 42
    # Continue a run: a checkpoint (outputs/.../checkpoints/last.ckpt), an MLflow run id, or "last"
    # (the most recent run of this experiment); the same MLflow run goes on (rnnlab.resume).
    resume: str | None = None
    # The metric that picks the best checkpoint, stops early and is reported to Optuna's pruner.
    monitor: str = "val/loss"
    monitor_mode: str = "min"
    # Checkpoints and the resolved config go here; None: Hydra's output dir (or a new dir under outputs/).
    output_dir: str | None = None

    def __post_init__(self) -> None:
        check_choice(self, "monitor_mode", ("min", "max"))
        from rnnlab.task import higher_is_better

        if higher_is_better(self.monitor) != (self.monitor_mode == "max"):
            better = "higher" if higher_is_better(self.monitor) else "lower"
            raise ConfigError(
                "monitor_mode",
                f"{self.monitor} is better {better}, but monitor_mode is {self.monitor_mode!r}: set "
                f"monitor_mode={'max' if better == 'higher' else 'min'}",
            )
        check_range(self, "seed", ge=0)
        self._check_tbptt()
        if self.resume is not None and (self.resume == "last" or re.fullmatch(r"[0-9a-f]{32}", self.resume)):
            pass  # a run, found in the store when the run starts (rnnlab.resume.resolve)
        elif self.resume is not None and not Path(self.resume).is_file():
            raise ConfigError("resume", f"checkpoint not found: {self.resume!r}")
        elif self.resume is not None and not zipfile.is_zipfile(self.resume):
            # torch.save writes a zip archive; anything else cannot be a checkpoint of ours
            raise ConfigError("resume", f"not a checkpoint (written by torch.save / Lightning): {self.resume!r}")

    def _check_tbptt(self) -> None:
        """Truncated BPTT runs forward in time with a loss at every step, one optimizer step a chunk."""
        if self.model.tbptt_steps is None:
            return
        key = "model.tbptt_steps"
        if getattr(self.backbone, "bidirectional", False):
            raise ConfigError(
                key,
                "a bidirectional backbone reads every sequence backwards from its end, which no chunk "
                "has: set backbone.bidirectional=false or model.tbptt_steps=null",
            )
        data = self.data
        kind = data.task_kind() if hasattr(data, "task_kind") else None
        kind = "forecast" if kind is None and isinstance(data, SeriesConfig) else kind
        if kind is not None and kind not in TBPTT_KINDS:
            raise ConfigError(
                key,
                f"needs a target at every step; data {getattr(data, 'name', '?')!r} is a {kind} task "
                f"(one target a sequence): set model.tbptt_steps=null",
                TBPTT_KINDS,
                label="task kinds it serves",
            )
        if self.trainer.accumulate_grad_batches != 1:
            raise ConfigError(
                key,
                "steps the optimizer once a chunk, so it cannot accumulate batches: "
                "set trainer.accumulate_grad_batches=1 or model.tbptt_steps=null",
            )


#: Task kinds truncated BPTT serves: a loss at every step, so every chunk has its own.
TBPTT_KINDS = ("language_model", "per_step_classification", "per_step_regression")

OPTIMIZERS: dict[str, type] = {"sgd": SGDConfig, "adam": AdamConfig, "adamw": AdamWConfig}
SCHEDULERS: dict[str, type] = {"cosine": CosineConfig, "step": StepConfig, "plateau": PlateauConfig}
