"""Records you can trust (issue 7): every epoch in the store when it ends, signals, exit codes,
many writers on one new SQLite store, runs you can tell apart. Real subprocesses and signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SMALL, run_cli

from rnnlab import tracking
from rnnlab.train import train

LONG = (*SMALL, "data.length=8000", "trainer.max_epochs=200", "trainer.early_stopping.enabled=false")


def _runs(workdir: Path, experiment: str = "rnnlab") -> list:
    client = tracking.open_client(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def _steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


# ------------------------------------------------------------------ 2. metrics complete and current


def test_each_epoch_is_in_the_store_when_it_ends(small_cfg, workdir, monkeypatch):
    """At the start of epoch k, epochs 0..k-1 are in the store (within moments: a background thread
    sends the spool), validation and training metrics, each once."""
    import pytorch_lightning as pl

    from rnnlab import train as train_module

    seen: list[tuple[int, int, int]] = []

    class Check(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            # spooled when the epoch ended; the sender thread has it in the store moments later
            client = tracking.open_client(f"sqlite:///{workdir}/mlflow.db")
            run_id = trainer.logger.version
            deadline = time.time() + 10
            while True:
                counts = (
                    trainer.current_epoch,
                    len(client.get_metric_history(run_id, "val/loss")),
                    len(client.get_metric_history(run_id, "train/loss_epoch")),
                )
                if counts[1] >= counts[0] or time.time() > deadline:
                    break
                time.sleep(0.05)
            seen.append(counts)

    make = train_module._callbacks
    monkeypatch.setattr(train_module, "_callbacks", lambda *a: [*make(*a), Check()])  # after the flush
    train(small_cfg("trainer.max_epochs=3", "trainer.early_stopping.enabled=false"))
    assert seen == [(0, 0, 0), (1, 1, 1), (2, 2, 2)]
    (run,) = _runs(workdir)
    client = tracking.open_client(f"sqlite:///{workdir}/mlflow.db")
    assert len(_steps(client, run.info.run_id, "val/loss")) == 3


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "sigint"])
def test_a_signal_ends_the_run_killed_naming_it_with_every_epoch_logged_once(workdir, sig, code):
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", *LONG],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = client = None
    deadline = time.time() + 120
    while time.time() < deadline and run is None:  # until the first epoch is in the store
        time.sleep(0.5)
        if proc.poll() is not None or not (workdir / "mlflow.db").exists():
            continue
        runs = _runs(workdir)
        client = tracking.open_client(f"sqlite:///{workdir}/mlflow.db")
        if runs and client.get_metric_history(runs[0].info.run_id, "val/loss"):
            run = runs[0]
    assert run is not None and client is not None, proc.communicate(timeout=30)
    time.sleep(1.0)  # into the next epoch or two
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-3000:]
    name = f"{signal.Signals(sig).name} (signal {int(sig)})"
    assert err.strip().splitlines()[-1] == f"rnnlab: error: stopped by {name}; the MLflow run is marked KILLED"
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "KILLED"
    assert ended.data.tags["rnnlab.error"] == f"stopped by {name}"
    # every epoch whose checkpoint was written is in the store, once
    (last,) = (workdir / "outputs").rglob("last.ckpt")
    completed = torch.load(last, weights_only=True)["epoch"] + 1
    steps = _steps(client, run.info.run_id, "val/loss")
    assert len(steps) == len(set(steps)) >= completed, (steps, completed)
    assert steps == sorted(steps)


# ------------------------------------------------------------------ 6. runs you can tell apart


def test_run_names_come_from_the_config_and_an_explicit_name_wins(small_cfg, workdir):
    from rnnlab.lifecycle import run_name

    assert run_name(small_cfg("backbone=gru", "seed=3")) == "gru-sine-seed3"
    assert run_name(small_cfg("logger.run_name=mine")) == "mine"
    assert run_name(small_cfg("trial.number=7")) == "lstm-sine-seed42-trial7"


def test_multirun_jobs_have_distinct_names_and_their_own_commands(workdir):
    res = run_cli(["-m", *SMALL, "trainer.max_epochs=1", "backbone=rnn,lstm,gru"], workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = _runs(workdir)
    assert all(r.info.status == "FINISHED" for r in runs)
    by_backbone = {r.data.params["backbone.name"]: r for r in runs}
    assert sorted(by_backbone) == ["gru", "lstm", "rnn"]
    for job, backbone in enumerate(["rnn", "lstm", "gru"]):
        run = by_backbone[backbone]
        assert run.info.run_name == (f"{backbone}-sine-seed42-length=600-window=16-hidden_size=8-max_epochs=1-job{job}")
        command = run.data.tags["rnnlab.command"]
        assert command.startswith("python -m rnnlab ") and "trainer.max_epochs=1" in command
        words = command.split()[3:]
        assert f"backbone={backbone}" in words and "," not in command and "-m" not in words
    client = tracking.open_client(f"sqlite:///{workdir}/mlflow.db")
    assert client.get_experiment_by_name("rnnlab").tags["mlflow.experimentKind"] == "custom_model_development"


# ------------------------------------------------------------------ 4. many writers, one store


@pytest.mark.slow
def test_eight_runs_started_at_once_on_a_new_store_all_finish(workdir):
    args = [*SMALL, "trainer.max_epochs=1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rnnlab", *args, f"seed={i}", f"hydra.run.dir=outputs/{i}"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    for p, err in zip(procs, errors, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "database is locked" not in err and "Traceback" not in err
    runs = _runs(workdir)
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.info.run_name for r in runs}) == 8


# ------------------------------------------------------------------ 1. (part) a run whose process died


def test_a_run_whose_process_was_killed_is_marked_killed_by_the_next_run(small_cfg, workdir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", *LONG], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    dead = None
    deadline = time.time() + 120
    while time.time() < deadline and dead is None and proc.poll() is None:
        time.sleep(0.5)
        if (workdir / "mlflow.db").exists():
            runs = _runs(workdir)
            dead = runs[0] if runs and runs[0].data.tags.get("rnnlab.pid") else None
    assert dead is not None, proc.communicate(timeout=30)
    proc.kill()  # SIGKILL: nothing in the process can end its run
    proc.wait(timeout=30)
    client = tracking.open_client(f"sqlite:///{workdir}/mlflow.db")
    assert client.get_run(dead.info.run_id).info.status == "RUNNING"

    train(small_cfg("trainer.max_epochs=1"))  # the next run on this store
    after = client.get_run(dead.info.run_id)
    assert after.info.status == "KILLED" and after.info.end_time is not None
    assert f"pid {proc.pid} on " in after.data.tags["rnnlab.error"]
    assert sorted(r.info.status for r in _runs(workdir)) == ["FINISHED", "KILLED"]


def test_a_non_finite_result_ends_the_run_failed_in_one_line():
    import math
    from types import SimpleNamespace

    import pytest
    from omegaconf import OmegaConf

    from rnnlab.report import NonFiniteResult, collect

    trainer = SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_score=None), current_epoch=2)
    cfg = OmegaConf.create({"monitor": "val/loss", "baseline": {}})

    def dm(scores):
        return SimpleNamespace(predict_with=lambda net, split: None, score=lambda pred, split: scores)

    with pytest.raises(NonFiniteResult, match=r"^test/mae is inf \(and 1 more\): the model or the data"):
        collect(cfg, trainer, {"test/mae": math.inf, "test/rmse": 1.0}, dm({"smape": math.nan}), None, 0.0)
    assert collect(cfg, trainer, {"test/mae": 1.0}, dm({}), None, 0.0).metrics["test/mae"] == 1.0
