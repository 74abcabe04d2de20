"""What a run records and tells: its config at the start, its metrics, model and results table at
the end. Every URI is shown without its password (``rnnlab.stores.redact``)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rnnlab import stores, tracking
from rnnlab.errors import RnnlabError


def log_config(run: Any, cfg: DictConfig, dm: Any, model: Any, out_dir: Path, resumed: bool = False) -> None:
    """Params (the flattened config, the data's description, the model's size) and config.yaml,
    in the run and in ``out_dir``. Nothing on ranks > 0 (``run`` is None there); a resumed run has
    its params already (MLflow cannot change one: ``resume`` itself differs)."""
    if run is None or resumed:
        return
    run.log_params(tracking.flatten(cfg))
    run.log_params({f"data.{k}": str(v) for k, v in dm.describe().items()})
    run.log_params({"model.n_parameters": str(sum(p.numel() for p in model.parameters()))})
    text = tracking.config_yaml(cfg)
    run.log_text(text, "config.yaml")
    (out_dir / "config.yaml").write_text(text)


def collect_metrics(cfg: DictConfig, trainer: Any, tested: dict[str, Any], dm: Any, started: float) -> dict[str, float]:
    """``test/*`` (on the best checkpoint), ``<monitor>`` (that checkpoint's value), ``epochs``,
    ``baseline/test/*``, ``train_seconds`` (since ``started``, a ``perf_counter`` time)."""
    metrics = {k: float(v) for k, v in tested.items()}
    best_val = trainer.checkpoint_callback.best_model_score
    if best_val is not None:
        metrics[cfg.monitor] = float(best_val)  # the best checkpoint's, e.g. val/loss
    metrics["epochs"] = float(trainer.current_epoch)
    metrics.update({f"baseline/{k}": v for k, v in dm.baseline().items()})
    metrics["train_seconds"] = time.perf_counter() - started
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:  # a result nobody can use must not pass as one: the run ends FAILED, saying which
        raise NonFiniteResult(
            f"{bad[0]} is {metrics[bad[0]]}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            + ": the model or the data gave no finite result; see the run's per-epoch metrics"
        )
    return metrics


class NonFiniteResult(RnnlabError):
    """A test metric or a baseline is NaN or infinite."""

    exit_code = 1


def log_results(run: Any, cfg: DictConfig, metrics: dict[str, float], trainer: Any, model: Any, dm: Any) -> None:
    """Send the final metrics, the best checkpoint and the model to the run; print the table."""
    if run is None:
        return
    # test/* came through Lightning; the best val value is logged apart from the per-epoch history
    run.log_metrics(
        {(f"best/{k}" if k == cfg.monitor else k): v for k, v in metrics.items() if not k.startswith("test/")}
    )
    run.flush()
    best_path = trainer.checkpoint_callback.best_model_path
    if cfg.logger.log_checkpoint and best_path:
        run.log_artifact(best_path, "checkpoints")
    if cfg.logger.log_model:
        net = model.net.cpu().eval()
        example = dm.splits["test"][0][:2].numpy()
        run.log_model(net, input_example=example)
    print_results(cfg, metrics, run, dm.task())


def results_table(metrics: dict[str, float], task: Any) -> str:
    """``metric  model  baseline`` rows for the loss and the task's metrics on the test split."""
    units = f" ({task.units})" if task.units else ""
    lines = [f"{'metric':<18}{'model':>12}{'baseline':>12}"]
    for m in ("loss", *task.metrics):
        value = metrics.get(f"test/{m}")
        if value is None:
            continue
        base = metrics.get(f"baseline/test/{m}")
        label = f"test/{m}" + (units if m in ("mae", "rmse") else "")
        lines.append(f"{label:<18}{value:>12.4f}{(f'{base:>12.4f}' if base is not None else ' ' * 12)}")
    return "\n".join(lines)


def print_results(cfg: DictConfig, metrics: dict[str, float], run: Any, task: Any) -> None:
    print(
        f"\nrnnlab: {cfg.backbone.name} on {cfg.data.name}, {int(metrics['epochs'])} epochs, "
        f"{metrics['train_seconds']:.1f} s\n{results_table(metrics, task)}\n"
        f"baseline: naive persistence (last observed value) on the same test windows\n"
        f"MLflow run: {run.run_id} (experiment {cfg.logger.experiment_name!r}) in {stores.redact(run.tracking_uri)}\n"
        f"open it:    {tracking.ui_command(run.tracking_uri)}\n",
        flush=True,
    )
