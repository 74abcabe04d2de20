"""``train(cfg) -> metrics``: build the plugins a config names, fit, test on the best checkpoint, log.

Callable from Python and tests; the CLI (``rnnlab.cli``) is a thin Hydra wrapper around it.
"""

from __future__ import annotations

import logging
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from rnnlab.registry import backbones, data_modules, regularizers
from rnnlab.validation import validate

log = logging.getLogger(__name__)


def _output_dir(cfg: DictConfig) -> Path:
    if cfg.get("output_dir"):
        path = Path(cfg.output_dir)
    else:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            path = Path(HydraConfig.get().runtime.output_dir)
        else:
            path = Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    path.mkdir(parents=True, exist_ok=True)
    return path


def build(cfg: DictConfig) -> tuple[Any, Any]:
    """The data module and the LightningModule for ``cfg`` (validated)."""
    from hydra.utils import instantiate

    from rnnlab.model import SequenceModel, SequenceNet

    plugins = validate(cfg)
    dm = data_modules.build(plugins.data, shuffle_seed=cfg.seed)
    dm.setup("fit")
    task = dm.task()
    backbone = backbones.build(plugins.backbone, input_size=task.input_size)
    regs = [regularizers.build(reg) for reg in plugins.regularizers]
    options = plugins.config.model.resolved(task.forecast)
    net = SequenceNet(
        backbone,
        task,
        regs,
        head_hidden=options.head_hidden,
        target=options.target,
        normalize=options.normalize,
        difference=options.difference,
        linear_skip=options.linear_skip,
        window=int(dm.splits["train"][0].shape[1]) if options.linear_skip else None,
    )
    if options.linear_skip:  # the linear AR's ridge fit, on the training windows only
        (x_train, y_train), (x_val, y_val) = (dm.splits[split][:2] for split in ("train", "val"))
        alpha = net.init_linear_skip(x_train, y_train, x_val, y_val)
        log.info("model.linear_skip: started at the ridge fit (alpha %g chosen on validation)", alpha)
    optimizer = instantiate(cfg.optimizer)
    scheduler, interval, monitor = None, "epoch", None
    if cfg.get("scheduler") is not None:
        sched = cast(dict[str, Any], OmegaConf.to_container(cfg.scheduler, resolve=True))
        interval, monitor = sched.pop("interval"), sched.pop("monitor")
        scheduler = instantiate(sched)
    model = SequenceModel(
        net,
        task,
        optimizer,
        scheduler,
        scheduler_interval=interval,
        scheduler_monitor=monitor,
        tbptt_steps=options.tbptt_steps,
        gradient_clip_val=cfg.trainer.gradient_clip_val,  # applied by the model only under truncated BPTT
        gradient_clip_algorithm=cfg.trainer.gradient_clip_algorithm,
    )
    return dm, model


def _callbacks(cfg: DictConfig, ckpt_dir: Path, run: Any) -> list[Any]:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from rnnlab.guard import NonFiniteGuard

    class _FlushMetrics(pl.Callback):
        """Send the buffered metrics to MLflow once an epoch, not once a step: when the epoch is over.

        Lightning 2.6 ends an epoch with: validation's metrics logged, ModelCheckpoint saving
        (``on_validation_end``), ``on_train_epoch_end``, then the epoch's training metrics logged.
        No hook follows that within the epoch, so the epoch is sent as the next one starts, or as
        training ends: after its checkpoint, with all its metrics, none held back an epoch."""

        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if trainer.is_global_zero:
                run.flush()

        def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if trainer.is_global_zero:
                run.flush()

    class _Checkpoint(ModelCheckpoint):
        """ModelCheckpoint that, with ``score_start``, makes the untrained state a candidate for the
        best checkpoint: a fresh fit (not a resumed one) validates once before its first step and
        saves that state as the best so far. With ``model.linear_skip`` the untrained net is the
        linear AR, so the tested (best on validation) model cannot be worse than it on validation.

        The start is scored silently: the other callbacks (progress, early stopping, pruning) see
        no extra validation; the logger gets its metrics at step 0. ``last.ckpt`` is written after
        every epoch, improved or not."""

        def __init__(self, *args: Any, score_start: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.score_start = score_start
            self._state_key = super().state_key

        @property
        def state_key(self) -> str:  # Lightning's rebuilds a repr of the settings at every hook call
            return self._state_key

        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            super().on_train_start(trainer, module)  # Lightning calls checkpoint callbacks last
            if not self.score_start or trainer.ckpt_path is not None or trainer.global_step > 0:
                return
            hooks: Any = trainer  # Trainer.callbacks is set at run time, unknown to mypy
            others, hooks.callbacks = hooks.callbacks, []
            try:
                trainer.validating = True  # what Lightning's epoch loop does around its validation
                trainer.fit_loop.epoch_loop.val_loop.run()
            finally:
                trainer.training = True
                hooks.callbacks = others
            if self.monitor in trainer.callback_metrics:
                self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

        # Lightning 2.6 writes last.ckpt only along with a new best checkpoint; a resumed run must go
        # on from the last epoch, so it is written after every epoch (where the base saves).
        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            super().on_train_epoch_end(trainer, module)
            if self._should_save_on_train_epoch_end(trainer):
                self._save_last(trainer)

        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            super().on_validation_end(trainer, module)
            if not self._should_save_on_train_epoch_end(trainer):
                self._save_last(trainer)

        def _save_last(self, trainer: pl.Trainer) -> None:
            if not self._should_skip_saving_checkpoint(trainer):  # skipped too if saved at this step
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    callbacks: list[Any] = [
        _Checkpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=cfg.monitor,
            mode=cfg.monitor_mode,
            save_top_k=1,
            save_last=True,
            auto_insert_metric_name=False,
            score_start=bool(cfg.model.linear_skip),
        ),
        _FlushMetrics(),
        NonFiniteGuard(check_every=cfg.trainer.log_every_n_steps),
    ]
    es = cfg.trainer.early_stopping
    if es.enabled:
        callbacks.append(
            EarlyStopping(monitor=cfg.monitor, mode=cfg.monitor_mode, patience=es.patience, min_delta=es.min_delta)
        )
    if cfg.get("scheduler") is not None:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cfg.diagnostics.enabled:
        from rnnlab.diagnostics import GradientFlow

        callbacks.append(
            GradientFlow(
                every_n_epochs=cfg.diagnostics.every_n_epochs,
                samples=cfg.diagnostics.samples,
                clip_val=cfg.trainer.gradient_clip_val,
                run=run,
                out_dir=ckpt_dir.parent,
            )
        )
    if cfg.trial.number is not None:
        from rnnlab.pruning import PruningCallback

        callbacks.append(PruningCallback(trial=cfg.trial, monitor=cfg.monitor))
    return callbacks


def _trainer(cfg: DictConfig, callbacks: list[Any], logger: Any, out_dir: Path) -> Any:
    import pytorch_lightning as pl

    from rnnlab import progress

    flags = cast(dict[str, Any], OmegaConf.to_container(cfg.trainer, resolve=True))
    flags.pop("early_stopping")
    if flags["max_time"] is not None:
        flags["max_time"] = {"seconds": round(flags["max_time"] * 60)}
    if flags["gradient_clip_val"] in (None, 0) or cfg.model.tbptt_steps is not None:
        # truncated BPTT optimizes manually, where Lightning refuses to clip: the model clips then
        flags["gradient_clip_val"], flags["gradient_clip_algorithm"] = None, None
    flags["enable_progress_bar"], shown = progress.callbacks(flags["enable_progress_bar"], cfg.monitor)
    trainer = pl.Trainer(**flags, callbacks=[*callbacks, *shown], logger=logger, default_root_dir=str(out_dir))
    skip_unused_batch_hooks(trainer.callbacks)  # type: ignore[attr-defined]
    return trainer


def slow_path(net: Any, precision: str, device_type: str) -> str | None:
    """A line when a run on a GPU in reduced precision leaves cuDNN's fused kernel (the reason to
    use one): the explicit cells run step by step (``backbone.kernel=cell``, chosen by the user or
    by a regularizer that acts inside the recurrence). None otherwise."""
    if device_type != "cuda" or precision in ("32-true", "32", "64-true", "64"):
        return None
    if getattr(net.backbone, "kernel", "fused") != "cell":
        return None
    return (
        f"trainer.precision={precision}: the backbone runs explicit cells step by step (backbone.kernel=cell), "
        "not cuDNN's fused kernel; expect it several times slower than the fused kernel"
    )


def batch_hooks() -> tuple[str, ...]:
    """The callback hooks Lightning calls on every batch (training, validation, test, predict)."""
    import pytorch_lightning as pl

    around_step = {"on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad"}
    return tuple(n for n in vars(pl.Callback) if n.startswith("on_") and ("_batch_" in n or n in around_step))


def skip_unused_batch_hooks(callbacks: list[Any]) -> None:
    """Set each callback's per-batch hooks that its class leaves as Lightning's no-op to ``None``.

    Lightning calls every hook of every callback, overridden or not, inside a profiler context
    named after the callback's ``state_key`` (for a checkpoint, a repr of its settings): a few
    microseconds per callback per hook, six hooks a training step. It skips an attribute that is not
    callable, so a hook no one implements costs nothing (rnnlab's callbacks, Lightning's own and a
    user's alike). Epoch-level hooks are left alone: they run once an epoch."""
    import pytorch_lightning as pl

    for callback in callbacks:
        for name in batch_hooks():
            if getattr(type(callback), name) is getattr(pl.Callback, name):
                setattr(callback, name, None)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test the model ``cfg`` describes; return its metrics.

    Keys: ``test/<metric>`` (on the best checkpoint), ``<monitor>`` (that checkpoint's value, e.g.
    ``val/loss``), ``baseline/<name>/test/<metric>`` for every applicable baseline plugin,
    ``baseline/test/<metric>`` (the best baseline's), ``epochs``, ``train_seconds``.
    The MLflow run is ended FINISHED, FAILED if anything raises, or KILLED by SIGINT / SIGTERM
    (``rnnlab.lifecycle.Interrupted`` is raised then).
    """
    import pytorch_lightning as pl

    from rnnlab import report, resume, tracking
    from rnnlab.lifecycle import RunLifecycle

    _quiet()
    started = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    # resume=: the same output dir (checkpoints, best, early stopping) and the same MLflow run
    resumed = resume.resolve(cfg.resume, cfg.logger.tracking_uri, cfg.logger.experiment_name) if cfg.resume else None
    out_dir = resumed.out_dir if resumed is not None else _output_dir(cfg)
    dm, model = build(cfg)
    with RunLifecycle(cfg, out_dir, resume_run_id=resumed.run_id if resumed else None) as life:
        report.log_config(life.run, cfg, dm, model, out_dir, resumed=resumed is not None)
        logger = tracking.lightning_logger(life.run) if life.run else False
        trainer = _trainer(cfg, _callbacks(cfg, out_dir / "checkpoints", life.run), logger, out_dir)
        warning = slow_path(model.net, str(cfg.trainer.precision), trainer.strategy.root_device.type)
        if warning:
            log.warning("rnnlab: warning: %s", warning)
        checkpoint = str(resumed.checkpoint) if resumed is not None else None
        trainer.fit(model, datamodule=dm, ckpt_path=checkpoint, weights_only=True)
        best = trainer.checkpoint_callback.best_model_path or None
        tested = trainer.test(model, datamodule=dm, ckpt_path=best, weights_only=True, verbose=False)[0]
        results = report.collect(cfg, trainer, tested, dm, model.net, started)
        report.log_results(life.run, cfg, results, trainer, model, dm, out_dir)
        for callback in trainer.callbacks:
            if getattr(callback, "summary", {}).get("sentence"):  # rnnlab.diagnostics.GradientFlow
                print(callback.summary["sentence"])
        return results.metrics


def _quiet() -> None:
    """Silence third-party warnings and info lines that say nothing about the user's run."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning.accelerators.cuda").setLevel(logging.WARNING)
    for message in (
        r".*isinstance\(treespec, LeafSpec\)",  # Lightning vs torch 2.13
        r"The number of training batches .* is smaller than the logging interval",
        r"The tensor attributes .* were assigned during export",  # MLflow's model export
        r"It is recommended to use `self.log\('(val|test)/",  # already all-reduced sums
        r".*does not have many workers which may be a bottleneck",
    ):  # we slice tensors
        warnings.filterwarnings("ignore", message=message)
