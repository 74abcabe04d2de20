"""What a run records and tells: its config at the start, its metrics, model and results table at
the end. Every URI is shown without its password (``rnnlab.stores.redact``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
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


@dataclass
class Results:
    """What a run found: ``metrics`` (what ``train()`` returns), the test predictions of the model
    and of each applicable baseline (original units), the baselines' descriptions, the best one."""

    metrics: dict[str, float]
    logged: set[str] = field(default_factory=set)  # keys Lightning has sent already
    primary: str = "loss"
    predictions: Any = None
    baseline_predictions: dict[str, Any] = field(default_factory=dict)
    baseline_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)
    best: str | None = None


def collect(cfg: DictConfig, trainer: Any, tested: dict[str, Any], dm: Any, net: Any, started: float) -> Results:
    """The run's results: ``test/*`` (Lightning's, on the best checkpoint, and the task's scores of the
    model's test predictions: MASE, sMAPE, per step), ``<monitor>`` (that checkpoint's value),
    ``epochs``, ``baseline/<name>/test/*`` for every configured baseline that applies (same windows,
    same scoring code), ``baseline/test/*`` (the best of them on the primary metric),
    ``train_seconds`` (since ``started``, a ``perf_counter`` time)."""
    from rnnlab import baseline
    from rnnlab.registry import baselines

    metrics = {k: float(v) for k, v in tested.items()}
    res = Results(metrics=metrics, logged=set(metrics), primary=getattr(dm, "primary_metric", "loss"))
    best_val = trainer.checkpoint_callback.best_model_score
    if best_val is not None:
        metrics[cfg.monitor] = float(best_val)  # the best checkpoint's, e.g. val/loss
    metrics["epochs"] = float(trainer.current_epoch)
    predictions = dm.predict_with(net, "test")
    scores = dm.score(predictions, "test")
    if scores:
        res.predictions = predictions
        for k, v in scores.items():
            metrics.setdefault(f"test/{k}", v)  # Lightning's own test/mae, test/rmse stay as logged
        plugins = {
            name: baselines.build(_schema(baselines, node)) for name, node in (cfg.get("baseline") or {}).items()
        }
        out = baseline.run(plugins, dm, "test")
        res.baseline_predictions, res.baseline_scores = out.predictions, out.scores
        res.descriptions, res.not_applicable = out.descriptions, out.not_applicable
        for name, scored in out.scores.items():
            metrics.update({f"baseline/{name}/test/{k}": v for k, v in scored.items()})
        res.best = baseline.best(res.baseline_scores, res.primary)
        if res.best is not None:
            metrics.update({f"baseline/test/{k}": v for k, v in res.baseline_scores[res.best].items()})
    metrics["train_seconds"] = time.perf_counter() - started
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:  # a result nobody can use must not pass as one: the run ends FAILED, saying which
        raise NonFiniteResult(
            f"{bad[0]} is {metrics[bad[0]]}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            + ": the model or the data gave no finite result; see the run's per-epoch metrics"
        )
    return res


def _schema(registry: Any, node: Any) -> Any:
    """A baseline's schema object from its config node (already validated with the run's config)."""
    from omegaconf import OmegaConf

    return node if not isinstance(node, DictConfig) else OmegaConf.to_object(node)


class NonFiniteResult(RnnlabError):
    """A test metric or a baseline is NaN or infinite."""

    exit_code = 1


def log_results(run: Any, cfg: DictConfig, results: Results, trainer: Any, model: Any, dm: Any, out_dir: Path) -> None:
    """Send the final metrics, the forecast plots, the best checkpoint and the model to the run;
    print the table."""
    if run is None:
        return
    metrics = results.metrics
    # Lightning sent its test/* already; the best val value is logged apart from the per-epoch history
    run.log_metrics(
        {(f"best/{k}" if k == cfg.monitor else k): v for k, v in metrics.items() if k not in results.logged}
    )
    tags = {f"rnnlab.baseline.{name}": text for name, text in results.descriptions.items()}
    if results.best is not None:
        tags["rnnlab.baseline.best"] = results.best
    if tags:
        run.set_tags(tags)
    run.flush()
    if results.predictions is not None:
        title = f"{cfg.backbone.name} on {cfg.data.name}"
        for path in dm.report_files(out_dir / "plots", model.net, results, title):
            run.log_artifact(path, "plots" if path.suffix == ".png" else None)
    best_path = trainer.checkpoint_callback.best_model_path
    if cfg.logger.log_checkpoint and best_path:
        run.log_artifact(best_path, "checkpoints")
    if cfg.logger.log_model:
        net = model.net.cpu().eval()
        example = dm.splits["test"][0][:2].numpy()
        run.log_model(net, input_example=example)
    print_results(cfg, results, run, dm.task())


def _rows(metrics: dict[str, float], task: Any) -> list[str]:
    """The table's metric names: the loss, the task's metrics and scores; at most three per-step rows."""
    names = [k.removeprefix("test/") for k in metrics if k.startswith("test/")]
    order = ("loss", "accuracy", "f1", "bpc", "perplexity", "mse", "mae", "rmse", "mase", "smape")
    steps = [n for n in names if n.startswith("rmse_step")]
    if len(steps) > 6:
        steps = [steps[0], steps[len(steps) // 2], steps[-1]]
    ranked = sorted((n for n in names if "_step" not in n), key=lambda n: (*order, n).index(n))
    return ranked + steps


def results_table(results: Results, task: Any) -> str:
    """``metric  model  <baseline> ...`` rows on the test split: the model beside every baseline that
    applies, each on the same windows, in original units."""
    metrics = results.metrics
    units = f" ({task.units})" if task.units else ""
    names = list(results.baseline_scores)
    widths = [max(12, len(n) + 2) for n in names]
    lines = [f"{'metric':<22}{'model':>12}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))]
    for m in _rows(metrics, task):
        value = metrics[f"test/{m}"]
        label = f"test/{m}" + (units if m.split("_step")[0] in ("mae", "rmse") else " (%)" if m == "smape" else "")
        row = f"{label:<22}{value:>12.4f}"
        for n, w in zip(names, widths, strict=True):
            base = results.baseline_scores[n].get(m)
            row += f"{base:>{w}.4f}" if base is not None else " " * w
        lines.append(row.rstrip())
    return "\n".join(lines)


def results_text(results: Results, task: Any) -> str:
    """The table, the baselines' descriptions, those that do not apply and the verdict."""
    from rnnlab.baseline import verdict

    parts = [results_table(results, task)]
    for name, text in results.descriptions.items():
        parts.append(f"  {name:<16} {text}")
    for name, reason in results.not_applicable.items():
        parts.append(f"  {name:<16} not applicable: {reason}")
    key = f"test/{results.primary}"
    if results.baseline_scores and key in results.metrics:
        parts.append(verdict(results.metrics[key], results.baseline_scores, results.primary))
    return "\n".join(parts)


def print_results(cfg: DictConfig, results: Results, run: Any, task: Any) -> None:
    metrics = results.metrics
    print(
        f"\nrnnlab: {cfg.backbone.name} on {cfg.data.name}, {int(metrics['epochs'])} epochs, "
        f"{metrics['train_seconds']:.1f} s; test scores beside every baseline, on the same test samples\n"
        f"{results_text(results, task)}\n"
        f"MLflow run: {run.run_id} (experiment {cfg.logger.experiment_name!r}) in {stores.redact(run.tracking_uri)}\n"
        f"open it:    {tracking.ui_command(run.tracking_uri)}\n",
        flush=True,
    )
