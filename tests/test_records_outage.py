"""A tracking server that goes away costs no training time and loses nothing (real server, real kill)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL, free_port, start_mlflow_server, stop_process
from mlflow.tracking import MlflowClient

EPOCHS = 30
ARGS = [
    *SMALL,
    "data.length=6000",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.early_stopping.enabled=false",
]


def _train(uri: str, cwd: Path, sync_timeout: float = 5) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CI": "true"}
    return subprocess.Popen(
        [sys.executable, "-m", "rnnlab", *ARGS, f"logger.tracking_uri={uri}", f"logger.sync_timeout={sync_timeout}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _spooled_epochs(cwd: Path) -> int:
    """How many epochs' val/loss the running job has spooled."""
    n = 0
    for path in cwd.rglob("mlflow-spool.jsonl"):
        for line in path.read_text().splitlines()[1:]:
            record = json.loads(line)
            n += sum(1 for m in record.get("args", {}).get("metrics", []) if m[0] == "val/loss")
    return n


def _train_and_kill_the_server_at_epoch_2(
    uri: str, cwd: Path, server: subprocess.Popen[str], sync_timeout: float = 5
) -> subprocess.Popen[str]:
    """A training job whose server is SIGKILLed once two epochs are spooled; the job goes on."""
    job = _train(uri, cwd, sync_timeout)
    while _spooled_epochs(cwd) < 2 and job.poll() is None:
        time.sleep(0.1)
    stop_process(server, signal.SIGKILL)
    return job


def _every_epoch_once(client: MlflowClient, run_id: str) -> bool:
    """One val/loss point per epoch (at the epoch's last global step), none twice."""
    steps = [m.step for m in client.get_metric_history(run_id, "val/loss")]
    return len(steps) == EPOCHS and len(set(steps)) == EPOCHS


@pytest.mark.slow
def test_server_killed_mid_run_costs_no_training_time_and_loses_nothing(tmp_path):
    port = free_port()
    store = tmp_path / "server"
    server = start_mlflow_server(store, port)
    uri = f"http://127.0.0.1:{port}"

    healthy_dir = tmp_path / "healthy"
    healthy_dir.mkdir()
    started = time.perf_counter()
    # the end of a run waits for the store only while records are left, so a long sync_timeout costs
    # a healthy run nothing; a short one would fail on a loaded machine where the last upload is slow
    healthy = _train(uri, healthy_dir, sync_timeout=60)
    _out, err = healthy.communicate(timeout=600)
    healthy_seconds = time.perf_counter() - started
    assert healthy.returncode == 0, err[-3000:]

    outage_dir = tmp_path / "outage"
    outage_dir.mkdir()
    started = time.perf_counter()
    job = _train_and_kill_the_server_at_epoch_2(uri, outage_dir, server, sync_timeout=60)
    killed_at = time.perf_counter()
    time.sleep(max(0.0, 3 - (time.perf_counter() - killed_at)))
    server = start_mlflow_server(store, port)
    try:
        out, err = job.communicate(timeout=600)
        outage_seconds = time.perf_counter() - started
        assert job.returncode == 0, err[-3000:]
        assert "does not answer; training goes on" in out + err
        assert "did not answer" not in out + err, "the server was back before training ended"
        # training went on while the server was down: no more than 1.3x the healthy run, plus the
        # the server's restart and the records kept meanwhile, sent once it is back
        assert outage_seconds <= 1.3 * healthy_seconds + 20, (outage_seconds, healthy_seconds)
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        outage_run = next(r for r in runs if r.info.run_id not in {_only_id(healthy_dir)})
        assert _every_epoch_once(client, outage_run.info.run_id)
        assert client.get_run(outage_run.info.run_id).info.status == "FINISHED"
    finally:
        stop_process(server)


def _only_id(run_dir: Path) -> str:
    (path,) = run_dir.rglob("mlflow-spool.jsonl")
    return json.loads(path.read_text().splitlines()[0])["run_id"]


@pytest.mark.slow
def test_server_back_only_after_training_ended_then_sync(tmp_path):
    port = free_port()
    store = tmp_path / "server"
    server = start_mlflow_server(store, port)
    uri = f"http://127.0.0.1:{port}"
    job = _train_and_kill_the_server_at_epoch_2(uri, tmp_path, server)
    _out, err = job.communicate(timeout=600)
    assert job.returncode == 0, err[-3000:]
    assert "python -m rnnlab sync" in err and "did not answer" in err
    run_id = _only_id(tmp_path)

    server = start_mlflow_server(store, port)
    try:
        res = subprocess.run([sys.executable, "-m", "rnnlab", "sync"], cwd=tmp_path, capture_output=True, text=True)
        assert res.returncode == 0 and "(all sent)" in res.stdout, res.stdout + res.stderr
        client = MlflowClient(uri)
        assert _every_epoch_once(client, run_id)
        assert client.get_run(run_id).info.status == "FINISHED"
        assert client.get_run(run_id).data.metrics.get("test/rmse") is not None
    finally:
        stop_process(server)
