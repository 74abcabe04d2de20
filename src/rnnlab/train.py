"""``train(cfg) -> metrics``: build the plugins a config names, fit, test on the best checkpoint, log.

Callable from Python and tests; the CLI (``rnnlab.cli``) is a thin Hydra wrapper around it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from rnnlab import config as rconfig
from rnnlab.registry import backbones, data_modules, regularizers

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


def _plugin_kwargs(node: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_object(node).kwargs()  # type: ignore[union-attr]


def build(cfg: DictConfig) -> tuple[Any, Any]:
    """The data module and the LightningModule for ``cfg`` (validated)."""
    from hydra.utils import instantiate

    from rnnlab.model import SequenceModel, SequenceNet

    dm = data_modules.create(cfg.data.name, **_plugin_kwargs(cfg.data), shuffle_seed=cfg.seed)
    dm.setup("fit")
    task = dm.task()
    backbone = backbones.create(cfg.backbone.name, input_size=task.input_size, **_plugin_kwargs(cfg.backbone))
    regs = [regularizers.create(node.name, **_plugin_kwargs(node)) for node in cfg.regularizer.values()]
    net = SequenceNet(backbone, task, regs, head_hidden=cfg.model.head_hidden)
    optimizer = instantiate(cfg.optimizer)
    scheduler, interval, monitor = None, "epoch", None
    if cfg.get("scheduler") is not None:
        sched = cast(dict[str, Any], OmegaConf.to_container(cfg.scheduler, resolve=True))
        interval, monitor = sched.pop("interval"), sched.pop("monitor")
        scheduler = instantiate(sched)
    model = SequenceModel(net, task, optimizer, scheduler, scheduler_interval=interval, scheduler_monitor=monitor)
    return dm, model


def _callbacks(cfg: DictConfig, ckpt_dir: Path, run: Any) -> list[Any]:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    class _FlushMetrics(pl.Callback):
        """Send buffered metrics to MLflow once an epoch, not once a step."""

        def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if trainer.is_global_zero:
                run.flush()

    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=cfg.monitor,
            mode=cfg.monitor_mode,
            save_top_k=1,
            save_last=True,
            auto_insert_metric_name=False,
        ),
        _FlushMetrics(),
    ]
    es = cfg.trainer.early_stopping
    if es.enabled:
        callbacks.append(
            EarlyStopping(monitor=cfg.monitor, mode=cfg.monitor_mode, patience=es.patience, min_delta=es.min_delta)
        )
    if cfg.get("scheduler") is not None:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cfg.trial.number is not None:
        from rnnlab.pruning import PruningCallback

        callbacks.append(PruningCallback(trial=cfg.trial, monitor=cfg.monitor))
    return callbacks


def _trainer(cfg: DictConfig, callbacks: list[Any], logger: Any, out_dir: Path) -> Any:
    import pytorch_lightning as pl

    flags = cast(dict[str, Any], OmegaConf.to_container(cfg.trainer, resolve=True))
    flags.pop("early_stopping")
    if flags["gradient_clip_val"] in (None, 0):
        flags["gradient_clip_algorithm"] = None
    return pl.Trainer(**flags, callbacks=callbacks, logger=logger, default_root_dir=str(out_dir))


# Set by Lightning's DDP launcher in this process; a later job of the same sweep must not inherit them,
# or Lightning would take its processes as started by someone else and wait for them.
_DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _ddp_ranks_run_this_job(out_dir: Path) -> None:
    """Lightning starts DDP ranks > 0 by re-running the command line. In a multirun that would start
    the whole sweep again in every rank (Lightning #11300, lightning-hydra-template #393); make the
    ranks run this job alone instead: its own overrides, a single run, in its output dir."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    import pytorch_lightning.strategies.launchers.subprocess_script as launcher

    overrides = list(HydraConfig.get().overrides.task)

    def command(local_rank: int) -> tuple[list[str], str]:
        return (
            [
                sys.executable,
                "-m",
                "rnnlab",
                *overrides,
                f'hydra.run.dir="{out_dir}"',
                f"hydra.job.name=ddp_rank_{local_rank}",
                "hydra.output_subdir=null",
            ],
            os.getcwd(),
        )

    launcher._hydra_subprocess_cmd = command


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the run is ended FAILED rather than left RUNNING."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated(f"received signal {signum}")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test the model ``cfg`` describes; return its metrics.

    Keys: ``test/<metric>`` (on the best checkpoint), ``<monitor>`` (that checkpoint's value, e.g.
    ``val/loss``), ``baseline/test/<metric>`` (e.g. naive persistence), ``epochs``, ``train_seconds``.
    The MLflow run is ended FINISHED, or FAILED if anything raises (Ctrl-C and SIGTERM included).
    """
    rconfig.validate(cfg)
    import pytorch_lightning as pl

    from rnnlab import tracking

    _quiet()
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning.accelerators.cuda").setLevel(logging.WARNING)
    started = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = _output_dir(cfg)
    dm, model = build(cfg)
    _ddp_ranks_run_this_job(out_dir.resolve())
    ddp_env = {k: os.environ.get(k) for k in _DDP_ENV}
    dist_before = _dist_initialized()

    rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    lc = cfg.logger
    trial_tags = {}
    if cfg.trial.number is not None:
        trial_tags = {
            "optuna.trial_number": str(cfg.trial.number),
            "optuna.study_name": str(cfg.trial.study_name),
        }
    run = (
        tracking.TrackedRun(
            lc.tracking_uri,
            lc.experiment_name,
            lc.run_name,
            tags={
                **tracking.version_tags(),
                **dict(lc.tags),
                **trial_tags,
                "rnnlab.backbone": cfg.backbone.name,
                "rnnlab.data": cfg.data.name,
                "rnnlab.command": _command(),
            },
            parent_run_id=cfg.trial.mlflow_parent_run_id,
            flush_every=lc.flush_every_n_steps,
        )
        if rank == 0
        else None
    )
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    status, state = "FAILED", "FAIL"
    try:
        if run is not None:
            run.log_params(tracking.flatten(cfg))
            run.log_params({f"data.{k}": str(v) for k, v in dm.describe().items()})
            run.log_params({"model.n_parameters": str(sum(p.numel() for p in model.parameters()))})
            run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        ckpt_dir = out_dir / "checkpoints"
        trainer = _trainer(
            cfg, _callbacks(cfg, ckpt_dir, run), tracking.lightning_logger(run) if run else False, out_dir
        )
        trainer.fit(model, datamodule=dm, ckpt_path=cfg.get("resume"), weights_only=True)
        best_path = trainer.checkpoint_callback.best_model_path
        best_val = trainer.checkpoint_callback.best_model_score
        tested = trainer.test(model, datamodule=dm, ckpt_path=best_path or None, weights_only=True, verbose=False)[0]
        metrics = {k: float(v) for k, v in tested.items()}
        if best_val is not None:
            metrics[cfg.monitor] = float(best_val)  # the best checkpoint's, e.g. val/loss
        metrics["epochs"] = float(trainer.current_epoch)
        baseline = {f"baseline/{k}": v for k, v in dm.baseline().items()}
        metrics.update(baseline)
        metrics["train_seconds"] = time.perf_counter() - started
        if run is not None:
            # test/* came through Lightning; the best val value is logged apart from the per-epoch history
            run.log_metrics(
                {(f"best/{k}" if k == cfg.monitor else k): v for k, v in metrics.items() if not k.startswith("test/")}
            )
            run.flush()
            if cfg.logger.log_checkpoint and best_path:
                run.log_artifact(best_path, "checkpoints")
            if cfg.logger.log_model:
                net = model.net.cpu().eval()
                example = dm.splits["test"][0][:2].numpy()
                run.log_model(net, input_example=example)
            _print_results(cfg, metrics, run, dm.task())
        status, state = "FINISHED", "COMPLETE"
        return metrics
    except BaseException as e:
        if type(e).__name__ == "TrialPruned":
            status, state = "FINISHED", "PRUNED"
        elif run is not None:
            run.set_tags({"rnnlab.error": f"{type(e).__name__}: {e}"[:5000]})
        raise
    finally:
        for key, value in ddp_env.items():
            if value is None:
                os.environ.pop(key, None)
        if _dist_initialized() and not dist_before:
            # Lightning leaves the process group up after a normal fit/test; the next job of a sweep in
            # this process needs a group of its own (the old one names ranks that have exited).
            import torch.distributed

            torch.distributed.destroy_process_group()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if run is not None:
            if cfg.trial.number is not None:
                run.set_tags({"optuna.trial_state": state})
            run.end(status)


def _dist_initialized() -> bool:
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _quiet() -> None:
    """Silence third-party warnings that say nothing about the user's run."""
    for message in (
        r".*isinstance\(treespec, LeafSpec\)",  # Lightning vs torch 2.13
        r"The number of training batches .* is smaller than the logging interval",
        r"The tensor attributes .* were assigned during export",  # MLflow's model export
        r"It is recommended to use `self.log\('(val|test)/",  # already all-reduced sums
        r".*does not have many workers which may be a bottleneck",
    ):  # we slice tensors
        warnings.filterwarnings("ignore", message=message)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _command() -> str:
    import shlex

    argv = sys.argv[1:] if Path(sys.argv[0]).name in ("__main__.py", "rnnlab") else []
    return "python -m rnnlab " + " ".join(shlex.quote(a) for a in argv) if argv else "python -m rnnlab"


def _print_results(cfg: DictConfig, metrics: dict[str, float], run: Any, task: Any) -> None:
    from rnnlab import tracking

    names = [m for m in ("loss", *task.metrics)]
    units = f" ({task.units})" if task.units else ""
    lines = [f"{'metric':<18}{'model':>12}{'baseline':>12}"]
    for m in names:
        value = metrics.get(f"test/{m}")
        if value is None:
            continue
        base = metrics.get(f"baseline/test/{m}")
        label = f"test/{m}" + (units if m in ("mae", "rmse") else "")
        lines.append(f"{label:<18}{value:>12.4f}{(f'{base:>12.4f}' if base is not None else ' ' * 12)}")
    text = "\n".join(lines)
    print(
        f"\nrnnlab: {cfg.backbone.name} on {cfg.data.name}, {int(metrics['epochs'])} epochs, "
        f"{metrics['train_seconds']:.1f} s\n{text}\n"
        f"baseline: naive persistence (last observed value) on the same test windows\n"
        f"MLflow run: {run.run_id} (experiment {cfg.logger.experiment_name!r}) in {run.tracking_uri}\n"
        f"open it:    {tracking.ui_command(run.tracking_uri)}\n",
        flush=True,
    )
