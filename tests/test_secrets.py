"""Credentials given in a URI are used, and written nowhere: not in Hydra's outputs, the MLflow store,
its artifacts, the Optuna study, the logs or an error message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import SMALL, postgres_url, run_cli

PASSWORD = "s3cret-Pw-7731"


def _files_holding(text: str, *roots: Path) -> list[str]:
    hits = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and text.encode() in path.read_bytes():
                hits.append(str(path))
    return hits


@pytest.mark.slow  # over 15 s in CI; the default run keeps under 10 minutes
def test_a_server_password_is_used_and_written_nowhere(workdir, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = mlflow_server.replace("http://", f"http://alice:{PASSWORD}@")
    res = run_cli([*SMALL, f"logger.tracking_uri={uri}"], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    assert PASSWORD not in res.stdout + res.stderr
    assert _files_holding(PASSWORD, tmp_path) == []  # outputs/, .hydra/, the server's store and artifacts
    runs = MlflowClient(mlflow_server).search_runs(["0", "1"])
    assert [r.info.status for r in runs] == ["FINISHED"]


@pytest.mark.slow  # over 15 s in CI; the default run keeps under 10 minutes
def test_a_postgres_password_for_the_sweep_storage_is_written_nowhere(workdir, tmp_path):
    import optuna

    url = postgres_url(role="rnnlab_secret", password=PASSWORD, db="rnnlab_secret_test")
    study = f"secret-{time.time_ns()}"
    args = [
        *SMALL,
        "-m",
        "hydra/sweeper=optuna",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.study_name={study}",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_workers=2",  # a worker process is started with this command line
        "hydra.sweeper.plots=false",
        "hydra.sweep.dir=multirun/secret",
        "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
    ]
    res = run_cli(args, workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    assert PASSWORD not in res.stdout + res.stderr
    assert _files_holding(PASSWORD, tmp_path) == []
    from rnnlab.stores import normalize_url

    assert len(optuna.load_study(study_name=study, storage=normalize_url(url)).trials) == 3


def test_a_password_in_a_config_file_is_refused_in_one_line(workdir):
    (workdir / "mine" / "experiment").mkdir(parents=True)
    (workdir / "mine" / "experiment" / "x.yaml").write_text(
        f"# @package _global_\nlogger:\n  tracking_uri: http://bob:{PASSWORD}@127.0.0.1:1\n"
    )
    res = run_cli(["--config-dir", str(workdir / "mine"), "experiment=x"], workdir)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("rnnlab: error: logger.tracking_uri: http://bob:***@127.0.0.1:1 holds a password")
    assert _files_holding(PASSWORD, workdir) == [str(workdir / "mine" / "experiment" / "x.yaml")]


def test_a_database_that_is_down_is_one_line_at_once(workdir):
    started = time.time()
    res = run_cli([*SMALL, f"logger.tracking_uri=postgresql+psycopg2://u:{PASSWORD}@127.0.0.1:1/db"], workdir)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(
        "rnnlab: error: logger.tracking_uri: cannot connect to postgresql+psycopg2://u@127.0.0.1:1"
    )
    assert PASSWORD not in res.stderr and time.time() - started < 30
    assert sorted(p.name for p in workdir.iterdir()) == []


def test_a_read_only_store_is_one_line(workdir):
    db = workdir / "mlflow.db"
    db.write_bytes(b"")
    db.chmod(0o444)
    res = run_cli([*SMALL, f"logger.tracking_uri=sqlite:///{db}"], workdir)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    import os

    if os.geteuid() == 0:  # root writes anyway: nothing to refuse
        return
    assert res.returncode == 2 and len(lines) == 1 and "read-only" in lines[0], res.stderr
