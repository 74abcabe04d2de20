"""resume= continues the same MLflow run after a SIGKILL, and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import SMALL, run_cli
from mlflow.tracking import MlflowClient

EPOCHS = 6
ARGS = [*SMALL, "data.length=3000", f"trainer.max_epochs={EPOCHS}", "trainer.early_stopping.enabled=false"]


def _client(cwd) -> MlflowClient:
    return MlflowClient(f"sqlite:///{cwd}/mlflow.db")


def _runs(cwd, experiment: str):
    client = _client(cwd)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def _spooled_val_losses(cwd) -> int:
    n = 0
    for path in cwd.rglob("mlflow-spool.jsonl"):
        for line in path.read_text().splitlines()[1:]:
            n += sum(1 for m in json.loads(line).get("args", {}).get("metrics", []) if m[0] == "val/loss")
    return n


@pytest.mark.slow
def test_sigkill_then_resume_last_is_one_finished_run_equal_to_an_uninterrupted_one(workdir):
    whole = run_cli([*ARGS, "logger.experiment_name=whole"], workdir)
    assert whole.returncode == 0, whole.stderr[-3000:]
    (reference,) = _runs(workdir, "whole")

    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", *ARGS, "logger.experiment_name=cut"],
        cwd=workdir,
        env={**os.environ, "CI": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while _spooled_val_losses(workdir) < 3 + 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # the whole run's 6 epochs and 3 of this one's are spooled
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed,) = _runs(workdir, "cut")
    assert killed.info.status == "RUNNING"  # nothing could end it

    resumed = run_cli([*ARGS, "logger.experiment_name=cut", "resume=last"], workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = _runs(workdir, "cut")  # the same run, not a second one
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    client = _client(workdir)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert len(steps) == EPOCHS and len(set(steps)) == EPOCHS  # every epoch exactly once
    for key in ("test/rmse", "test/mae", "best/val/loss"):
        assert run.data.metrics[key] == pytest.approx(reference.data.metrics[key], rel=1e-5, abs=1e-7), key


def test_resume_names_a_run_that_is_not_there_in_one_line(workdir):
    res = run_cli([*SMALL, "resume=last"], workdir)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("rnnlab: error: resume: no run to resume: "), lines
    assert sorted(p.name for p in workdir.iterdir()) == []  # no store created to look in
