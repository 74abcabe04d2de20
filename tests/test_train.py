"""End to end: train() and the CLI against a real MLflow SQLite store."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from rnnlab.train import train


def _client(workdir):
    return MlflowClient(f"sqlite:///{workdir}/mlflow.db")


def _only_run(workdir):
    client = _client(workdir)
    exp = client.get_experiment_by_name("rnnlab")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_train_logs_a_complete_run(small_cfg, workdir):
    cfg = small_cfg("logger.log_model=true", "trainer.max_epochs=3", "trainer.early_stopping.enabled=false")
    metrics = train(cfg)
    assert {"test/loss", "test/mae", "test/rmse", "baseline/test/rmse", "epochs"} <= set(metrics)
    assert metrics["epochs"] == 3

    client, run = _only_run(workdir)
    assert run.info.status == "FINISHED"
    assert run.data.params["backbone.hidden_size"] == "8" and run.data.params["data.name"] == "sine"
    assert run.data.params["optimizer._target_"] == "torch.optim.Adam"
    assert {"rnnlab.version", "torch.version", "lightning.version", "host"} <= set(run.data.tags)
    assert run.data.metrics["test/rmse"] == pytest.approx(metrics["test/rmse"])
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert len(history) == 3  # one value per epoch
    assert len(client.get_metric_history(run.info.run_id, "train/loss_epoch")) == 3

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoints", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/forecast.png", "plots/error_by_step.png"}
    # every applicable baseline on the same windows, the best one's values, and what each chose
    for name in ("persistence", "drift", "linear_ar"):
        for score in ("mae", "rmse", "mase", "smape"):
            assert run.data.metrics[f"baseline/{name}/test/{score}"] == pytest.approx(
                metrics[f"baseline/{name}/test/{score}"]
            )
    best = run.data.tags["rnnlab.baseline.best"]
    assert run.data.metrics["baseline/test/rmse"] == min(
        run.data.metrics[f"baseline/{n}/test/rmse"] for n in ("persistence", "drift", "linear_ar")
    )
    assert run.data.metrics["baseline/test/rmse"] == run.data.metrics[f"baseline/{best}/test/rmse"]
    assert "alpha" in run.data.tags["rnnlab.baseline.linear_ar"]
    assert "baseline/seasonal_naive/test/rmse" not in metrics  # sine has no season
    config_text = client.download_artifacts(run.info.run_id, "config.yaml", str(workdir))
    assert "hidden_size: 8" in Path(config_text).read_text()
    checkpoints = client.list_artifacts(run.info.run_id, "checkpoints")
    assert [a.path for a in checkpoints] == ["checkpoints/best.ckpt"]

    import mlflow.pytorch

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    x = torch.randn(5, 16, 1)
    pred = model(x)
    assert pred.shape == (5, 1) and torch.isfinite(pred).all()


def test_model_beats_persistence_on_sine(small_cfg):
    metrics = train(
        small_cfg(
            "data.length=2000",
            "backbone.hidden_size=16",
            "trainer.max_epochs=8",
            "optimizer.lr=0.01",
            "data.noise=0.02",
        )
    )
    assert metrics["test/rmse"] < metrics["baseline/persistence/test/rmse"]


def test_same_seed_gives_identical_metrics(small_cfg, workdir):
    a = train(small_cfg("seed=7", f"output_dir={workdir}/a"))
    b = train(small_cfg("seed=7", f"output_dir={workdir}/b"))
    c = train(small_cfg("seed=8", f"output_dir={workdir}/c"))
    for key in ("test/loss", "test/rmse", "val/loss"):
        assert a[key] == b[key], key
    assert a["test/loss"] != c["test/loss"]


def test_a_run_that_fails_is_marked_failed(small_cfg, workdir):
    import zipfile

    bad = workdir / "not_a_checkpoint.ckpt"  # a zip archive (passes validation) that torch cannot load
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("archive/data.pkl", b"this is not a checkpoint")
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises for a corrupt file
        train(small_cfg(f"resume={bad}"))
    _, run = _only_run(workdir)
    assert run.info.status == "FAILED"
    assert "rnnlab.error" in run.data.tags


def test_resume_continues_from_a_checkpoint(small_cfg, workdir):
    train(small_cfg("trainer.max_epochs=2", f"output_dir={workdir}/first"))
    last = workdir / "first" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    metrics = train(small_cfg("trainer.max_epochs=4", f"resume={last}", f"output_dir={workdir}/second"))
    assert metrics["epochs"] == 4


def test_regularizers_and_scheduler_train(small_cfg):
    metrics = train(small_cfg("regularizer=[dropout,ar_tar]", "scheduler=plateau", "optimizer=sgd"))
    assert np.isfinite(metrics["test/loss"])


def test_exploding_loss_stops_with_a_clear_error(small_cfg, workdir):
    cfg = small_cfg(
        "backbone=rnn",
        "backbone.nonlinearity=relu",
        "optimizer=sgd",
        "optimizer.lr=1e6",
        "trainer.gradient_clip_val=null",
        "model.head_hidden=8",
    )
    with pytest.raises(FloatingPointError, match=r"non-finite value in the (gradient of net\.|loss).* step \d+ "):
        train(cfg)
    _, run = _only_run(workdir)
    assert run.info.status == "FAILED" and "non-finite value" in run.data.tags["rnnlab.error"]


def test_cli_trains_and_prints_the_results_table(workdir):
    from conftest import SMALL, run_cli

    res = run_cli([*SMALL, "backbone=gru"], workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    header = next(ln for ln in res.stdout.splitlines() if ln.startswith("metric"))
    assert header.split() == ["metric", "model", "persistence", "drift", "linear_ar"]
    assert any(ln.startswith("test/mase") for ln in res.stdout.splitlines())
    assert "seasonal_naive   not applicable: the series has no season" in res.stdout
    assert re.search(
        r"^best baseline: \w+ \(rmse [0-9.e-]+\); the model's rmse [0-9.e-]+ is [0-9.]+x", res.stdout, re.M
    )
    assert "mlflow ui --backend-store-uri sqlite:///" in res.stdout
    _, run = _only_run(workdir)
    assert run.info.status == "FINISHED" and run.data.params["backbone.name"] == "gru"
    assert run.info.run_id in res.stdout


# Signals, exit codes and the names of multirun jobs: tests/test_records.py


def test_max_time_stops_training_but_not_before_min_epochs(small_cfg):
    """trainer.max_time (minutes) ends training after the step that passes it, the run then tests
    its best checkpoint; min_epochs is trained all the same (README, Config groups)."""
    import math

    from rnnlab.train import train

    budget = ("trainer.max_epochs=50", "trainer.max_time=0.0001", "trainer.early_stopping.enabled=false")
    stopped = train(small_cfg(*budget, "trainer.min_epochs=0"))
    assert stopped["epochs"] <= 1 and math.isfinite(stopped["test/rmse"])  # stopped inside epoch 1
    assert train(small_cfg(*budget, "trainer.min_epochs=3"))["epochs"] == 3


def test_batch_hooks_no_callback_implements_are_skipped_and_the_rest_still_run(small_cfg, workdir):
    """Lightning calls every per-batch hook of every callback; rnnlab sets the ones a callback's
    class does not implement to None (Lightning skips what is not callable). Those it implements
    must still run every step: a counting callback, the guard and the checkpoint."""
    import pytorch_lightning as pl

    import rnnlab.train as rt
    from rnnlab.guard import NonFiniteGuard

    class Counter(pl.Callback):
        def __init__(self) -> None:
            self.ends = 0

        def on_train_batch_end(self, *args, **kwargs) -> None:
            self.ends += 1

    seen = {}
    counter = Counter()
    original_callbacks, original_trainer = rt._callbacks, rt._trainer

    def trainer(cfg, callbacks, logger, out_dir):
        made = original_trainer(cfg, callbacks, logger, out_dir)
        seen["trainer"] = made
        return made

    rt._callbacks = lambda *a, **k: [*original_callbacks(*a, **k), counter]
    rt._trainer = trainer
    try:
        rt.train(small_cfg("trainer.max_epochs=2"))
    finally:
        rt._callbacks, rt._trainer = original_callbacks, original_trainer
    made = seen["trainer"]
    assert counter.ends == made.global_step > 0  # the one it implements ran on every step
    assert counter.on_before_backward is None and counter.on_validation_batch_end is None
    guard = next(c for c in made.callbacks if isinstance(c, NonFiniteGuard))
    assert callable(guard.on_before_optimizer_step) and callable(guard.on_train_batch_end)
    assert guard.on_before_zero_grad is None
    for callback in made.callbacks:
        for name in rt.batch_hooks():
            implemented = getattr(type(callback), name) is not getattr(pl.Callback, name)
            assert callable(getattr(callback, name)) == implemented, (type(callback).__name__, name)
    ckpt = made.checkpoint_callback  # its cached state_key is the one Lightning would compute
    assert ckpt.state_key == pl.callbacks.ModelCheckpoint.state_key.fget(ckpt)
