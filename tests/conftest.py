"""Shared fixtures: the real config, composed and shrunk so a training run takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A small, fast experiment: the real code path on a tiny model and a short synthetic series.
SMALL = (
    "data=sine",
    "data.length=600",
    "data.window=16",
    "backbone.hidden_size=8",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "logger.log_model=false",
)


def sweep_args(study: str, n_trials: int, seed: int = 0) -> list[str]:
    """A small Optuna sweep over the learning rate: random sampler, a median pruner that may stop a
    trial from its first epoch on, in ``multirun/<study>`` of the working directory."""
    return [
        "-m",
        "hydra/sweeper=optuna",
        f"hydra.sweep.dir=multirun/{study}",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.sampler.name=random",
        f"hydra.sweeper.sampler.seed={seed}",
        "hydra.sweeper.plots=false",
        "hydra.sweeper.pruner.name=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "optimizer.lr=tag(log, interval(1e-5, 3e-2))",
    ]


@pytest.fixture(autouse=True)
def _no_handlers_on_closed_streams():
    """In-process CLI runs (``rnnlab.cli.main``) leave logging handlers on the stream pytest captured
    for that test and has since closed; a later test's logging through them prints "--- Logging
    error ---" tracebacks into its own capture. They are dropped before each test."""
    import logging

    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            if getattr(getattr(handler, "stream", None), "closed", False):
                logger.removeHandler(handler)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, as a user's would be (mlflow.db and outputs/ land here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def small_cfg(workdir: Path):
    """``small_cfg(*overrides)`` -> the composed real config, shrunk, logging to ``workdir``."""
    from rnnlab.composition import compose

    def make(*overrides: str):
        return compose([*SMALL, f"output_dir={workdir}/out", *overrides])

    return make


def run_cli(
    args: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python -m rnnlab ARGS`` in ``cwd``, as a user would type it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "rnnlab", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(store: Path, port: int, timeout: float = 90) -> subprocess.Popen[str]:
    """A real ``mlflow server`` on 127.0.0.1:``port`` with its store in ``store``, once it answers."""
    import time

    from rnnlab.errors import ConfigError
    from rnnlab.tracking import check_reachable

    store.mkdir(parents=True, exist_ok=True)
    argv = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{store}/mlflow.db",
        "--artifacts-destination",
        str(store / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # its own process group: the server's workers are its children, and a kill must reach them too
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + timeout
    while True:
        try:
            check_reachable(f"http://127.0.0.1:{port}", timeout=1)
            return proc
        except ConfigError:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            if time.time() > deadline:
                proc.kill()
                pytest.fail(f"mlflow server did not start in {timeout:g} s")
            time.sleep(0.5)


def stop_process(proc: subprocess.Popen[str], sig: int | None = None) -> None:
    """Signal a process started in its own session, and everything in its group; wait for it."""
    import signal

    try:
        os.killpg(proc.pid, sig or signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` on 127.0.0.1 with its store in ``tmp_path/server``; yields its URI."""
    port = free_port()
    proc = start_mlflow_server(tmp_path / "server", port)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


def postgres_url(role: str = "rnnlab", password: str = "rnnlab", db: str = "rnnlab_test") -> str:
    """A PostgreSQL URL for the tests: $RNNLAB_TEST_POSTGRES_URL, or a local cluster started here (as
    root) with ``role`` / ``password`` owning ``db``; skips the test when neither is possible."""
    import shutil

    if url := os.environ.get("RNNLAB_TEST_POSTGRES_URL"):
        return url
    if not shutil.which("pg_ctlcluster") and not Path("/usr/bin/pg_ctlcluster").exists():
        pytest.skip("no PostgreSQL: pg_ctlcluster not found and RNNLAB_TEST_POSTGRES_URL not set")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL needs root; set RNNLAB_TEST_POSTGRES_URL")
    subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True)
    sql = (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='{role}') THEN "
        f"CREATE ROLE {role} LOGIN PASSWORD '{password}'; END IF; END $$;"
    )
    ok = subprocess.run(["su", "postgres", "-c", "psql -q"], input=sql, capture_output=True, text=True)
    if ok.returncode != 0:
        pytest.skip(f"cannot reach PostgreSQL: {ok.stderr.strip()}")
    subprocess.run(["su", "postgres", "-c", f"createdb -O {role} {db}"], capture_output=True)
    return f"postgresql://{role}:{password}@127.0.0.1:5432/{db}"
