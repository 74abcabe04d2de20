"""The spool: records kept while a real MLflow server is down, sent when it answers, replayed by
``python -m rnnlab sync`` after the process is gone; appending never waits on the server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import free_port, start_mlflow_server, stop_process
from mlflow.tracking import MlflowClient

from rnnlab.spool import SPOOL_NAME, Sender, Spool, quick_http_failures


@pytest.fixture
def server(tmp_path):
    """(uri, restart(), kill()) of a server whose store survives restarts on the same port."""
    port = free_port()
    store = tmp_path / "server"
    procs = [start_mlflow_server(store, port)]

    def kill() -> None:
        stop_process(procs[-1], signal.SIGKILL)

    def restart() -> None:
        procs.append(start_mlflow_server(store, port))

    yield f"http://127.0.0.1:{port}", restart, kill
    stop_process(procs[-1])


def _epoch(spool: Spool, epoch: int, value: float) -> None:
    spool.append("batch", metrics=[["val/loss", value, int(time.time() * 1000), epoch]])


def _steps(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "val/loss"))


def test_records_wait_out_a_server_outage_and_appending_never_blocks(server, tmp_path, monkeypatch):
    uri, restart, kill = server
    for name, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}.items():
        monkeypatch.setenv(name, value)
    quick_http_failures()
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("spool")).info.run_id
    spool = Spool(tmp_path / "out" / SPOOL_NAME, uri, run_id)
    sender = Sender(spool, MlflowClient(uri))
    try:
        for epoch in range(3):
            _epoch(spool, epoch, 1.0 / (epoch + 1))
            sender.notify()
        assert sender.drain(30)
        kill()
        started = time.perf_counter()
        for epoch in range(3, 6):
            _epoch(spool, epoch, 1.0 / (epoch + 1))
            sender.notify()
        assert time.perf_counter() - started < 0.5  # training's side is a local append
        assert not sender.drain(3) and spool.pending() == 3
        restart()
        spool.append("status", status="FINISHED", end_time=int(time.time() * 1000))
        sender.notify()
        assert sender.drain(60), spool.pending()
    finally:
        sender.close()
    assert _steps(client, run_id) == [0, 1, 2, 3, 4, 5]  # every epoch exactly once
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow  # over 15 s in CI; the default run keeps under 10 minutes
def test_sync_replays_what_a_finished_process_left(server, tmp_path, monkeypatch):
    uri, restart, kill = server
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("sync")).info.run_id
    kill()
    work = tmp_path / "work"
    spool = Spool(work / "outputs" / "a" / SPOOL_NAME, uri, run_id)
    for epoch in range(4):
        _epoch(spool, epoch, float(epoch))
    spool.append("status", status="FINISHED", end_time=int(time.time() * 1000))

    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    down = subprocess.run(
        [sys.executable, "-m", "rnnlab", "sync"], cwd=work, capture_output=True, text=True, env={**_env(), **env}
    )
    assert down.returncode == 1 and "5 left: MLflow at" in down.stdout, down.stdout + down.stderr

    restart()
    up = subprocess.run([sys.executable, "-m", "rnnlab", "sync"], cwd=work, capture_output=True, text=True)
    assert up.returncode == 0 and "5 of 5 records sent (all sent)" in up.stdout, up.stdout + up.stderr
    assert _steps(client, run_id) == [0, 1, 2, 3]
    assert client.get_run(run_id).info.status == "FINISHED"
    again = subprocess.run([sys.executable, "-m", "rnnlab", "sync"], cwd=work, capture_output=True, text=True)
    assert again.returncode == 0 and _steps(client, run_id) == [0, 1, 2, 3]  # nothing sent twice


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
