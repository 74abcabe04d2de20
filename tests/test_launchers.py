"""Sweeps through Hydra's launcher plugins (``launcher=submitit_local``, ``launcher=ray``): the sweeper
hands each batch of trials to the launcher, the trials run in other processes, report each epoch to
the Optuna storage (the pruner stops them there) and nest under the sweep's one MLflow parent run.
A launcher that runs trials elsewhere with ``storage: null`` is refused before anything runs."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import SMALL, postgres_url, run_cli, sweep_args
from optuna.trial import TrialState
from test_sweeper import FAST, app

N_TRIALS = 4
# Two trials at a time on a 2-core machine: one thread each, as Ray gives its tasks (num_cpus=1).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def _sweep(tmp_path: Path, launcher: str, databases: tuple[str, str] | None = None) -> None:
    """A sweep of N_TRIALS; its stores SQLite files in ``tmp_path``, or the PostgreSQL ``databases``
    (Optuna's, MLflow's; passwords on the command line: rnnlab moves them into the environment the
    jobs inherit)."""
    name, optuna_url, tracking_uri = "s", f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    stores = []
    if databases is not None:
        from rnnlab.stores import normalize_url

        # MLflow's own store takes the driver's name (rnnlab's tracking URI is not normalized)
        name, optuna_url, tracking_uri = f"launch-{time.time_ns()}", databases[0], normalize_url(databases[1])
        stores = [
            f"hydra.sweeper.storage={optuna_url}",
            f"logger.tracking_uri={tracking_uri}",
            f"logger.experiment_name={name}",
        ]
    args = [
        *sweep_args("s", n_trials=N_TRIALS, seed=0),
        *stores,
        f"hydra.sweeper.study_name={name}",
        f"launcher={launcher}",
        "hydra.sweeper.n_jobs=2",  # two batches of two: the second is pruned against the first
        *SMALL,
        "trainer.max_epochs=4",
        "trainer.early_stopping.enabled=false",
        "logger.log_checkpoint=false",
    ]
    proc = run_cli(args, tmp_path, env=ONE_THREAD, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]

    from rnnlab.stores import normalize_url

    study = optuna.load_study(study_name=name, storage=normalize_url(optuna_url))
    trials = study.get_trials()
    assert len(trials) == N_TRIALS  # the exact count, no trial run twice or lost
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert any(t.state == TrialState.PRUNED for t in trials), [t.intermediate_values for t in trials]
    assert all(t.intermediate_values for t in trials)  # every job reported to the storage from its process
    sweeper_pid = trials[0].system_attrs["rnnlab:pid"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(normalize_url(tracking_uri))
    runs = client.search_runs([client.get_experiment_by_name(name if databases else "rnnlab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("rnnlab.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == N_TRIALS + 1 and len(children) == N_TRIALS
    assert {int(r.data.tags["optuna.trial_number"]): r.data.tags["optuna.trial_state"] for r in children} == {
        t.number: t.state.name for t in trials
    }
    assert {r.info.status for r in runs} == {"FINISHED"}  # none left RUNNING
    assert all(r.data.tags["rnnlab.pid"] != str(sweeper_pid) for r in children)  # trials ran elsewhere
    assert len({r.data.tags["rnnlab.pid"] for r in children}) >= 2


@pytest.mark.slow
def test_a_pruned_sweep_through_submitit_local(tmp_path: Path) -> None:
    _sweep(tmp_path, "submitit_local")
    # submitit ran the jobs, a batch's two at the same time: each job's log says when it started and ended
    spans = []
    for log in sorted((tmp_path / "multirun" / "s" / ".submitit").glob("*/*_0_log.out")):
        stamps = re.findall(r"^submitit INFO \((.{23})\)", log.read_text(), re.M)
        spans.append((stamps[0], stamps[-1]))
    assert len(spans) == N_TRIALS
    (a, b), (c, d) = sorted(spans)[:2]  # the first batch
    assert a < d and c < b, spans


@pytest.mark.slow
def test_a_pruned_sweep_through_a_local_ray_cluster(tmp_path: Path) -> None:
    _sweep(tmp_path, "ray")


@pytest.mark.slow
def test_a_pruned_sweep_through_ray_on_shared_postgresql_stores(tmp_path: Path) -> None:
    """The several-machines recipe on one: Optuna and MLflow on a PostgreSQL server, a database each."""
    _sweep(tmp_path, "ray", (postgres_url(db="rnnlab_launch_optuna"), postgres_url(db="rnnlab_launch_mlflow")))


@pytest.mark.parametrize("launcher", ["submitit_local", "ray"])
def test_in_memory_storage_with_a_launcher_of_other_processes_is_refused(tmp_path: Path, launcher: str) -> None:
    proc = run_cli(
        [
            "-m",
            "hydra/sweeper=optuna",
            f"launcher={launcher}",
            "hydra.sweeper.storage=null",
            *SMALL,
            "optimizer.lr=interval(1e-4, 1e-2)",
        ],
        tmp_path,
    )
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith(
        f"rnnlab: error: hydra.sweeper.storage: null is an in-memory study, out of reach of the trials that "
        f"launcher '{launcher}' runs in other processes"
    ), err[0]
    assert not list(tmp_path.iterdir())  # nothing ran: no store, no study, no sweep dir


def test_the_sweeper_refuses_it_in_any_app(tmp_path: Path) -> None:
    """The same check in the sweeper, for an app that is not rnnlab's CLI (the toy app)."""
    proc = app(
        tmp_path,
        *FAST,
        "hydra/launcher=submitit_local",
        "hydra.sweeper.storage=null",
        "x=interval(0.0, 1.0)",
        check=False,
    )
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith("rnnlab: error: hydra.sweeper.storage: null is an in-memory study"), err[0]
    assert "'LocalLauncher' runs in other processes" in err[0]
    assert not (tmp_path / "multirun").exists()


def test_a_launcher_whose_plugin_is_missing_names_the_extra(tmp_path: Path) -> None:
    """As in an environment without rnnlab[ray]: the plugin's package cannot be imported."""
    import subprocess

    code = (
        "import sys; sys.modules['hydra_plugins.hydra_ray_launcher'] = None\n"
        "from rnnlab.cli import main; main(['-m', 'launcher=ray'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ}
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip() == (
        "rnnlab: error: launcher: 'ray' needs hydra-ray-launcher, which is not installed: pip install 'rnnlab[ray]'"
    )


def test_the_slurm_preset_gives_each_job_the_runs_nodes() -> None:
    from omegaconf import OmegaConf

    from rnnlab.composition import Composer

    with Composer("train", None) as compose:
        full = compose(["launcher=submitit_slurm", "trainer.num_nodes=3"], return_hydra_config=True)
    assert full.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert OmegaConf.select(full, "hydra.launcher.nodes") == 3


def test_errors_a_job_returns_cross_processes() -> None:
    """submitit and Ray send a failed job's exception back pickled: rnnlab's own must survive it."""
    import pickle
    import signal

    from rnnlab.errors import ConfigError
    from rnnlab.lifecycle import Interrupted

    error = pickle.loads(pickle.dumps(ConfigError("data.path", "no such file", ["a.csv"])))
    assert (type(error), str(error)) == (ConfigError, "data.path: no such file; valid choices: a.csv")
    stop = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert (type(stop), stop.signum, stop.exit_code) == (Interrupted, signal.SIGTERM, 143)


def test_optuna_and_mlflow_in_one_database_are_refused(tmp_path: Path) -> None:
    proc = run_cli(
        [
            "-m",
            "hydra/sweeper=optuna",
            *SMALL,
            "optimizer.lr=interval(1e-4, 1e-2)",
            "hydra.sweeper.storage=sqlite:///both.db",
            f"logger.tracking_uri=sqlite:///{tmp_path / 'both.db'}",
        ],
        tmp_path,
    )
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0] == (
        "rnnlab: error: hydra.sweeper.storage: sqlite:///both.db is also logger.tracking_uri's database; Optuna "
        "and MLflow each need their own (both version their schema in the table alembic_version)"
    )
    assert not list(tmp_path.iterdir())
