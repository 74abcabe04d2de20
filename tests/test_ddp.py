"""DDP on CPU (gloo, two processes): a plain run, and a sweep whose trials each run under DDP."""

import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

DDP = ("trainer.strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2")


@pytest.mark.slow
def test_ddp_sweep_runs_each_trial_once_and_prunes(tmp_path):
    """Lightning starts DDP rank 1 by re-running the command line; in a multirun it must run the
    trial's job, not the sweep again (which would multiply trials and MLflow runs)."""
    from conftest import SMALL, sweep_args

    cmd = [
        sys.executable,
        "-m",
        "rnnlab",
        *sweep_args("ddp", n_trials=3, seed=1),
        *SMALL,
        *DDP,
        "trainer.max_epochs=4",
        "trainer.early_stopping.enabled=false",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]

    study = optuna.load_study(study_name="ddp", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 3
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 3 and len(runs) == 4  # one run per trial (rank 0 only) and the parent
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == [0, 1, 2]
    assert not list((tmp_path / "multirun" / "ddp").glob("*/multirun"))  # no rank re-ran the sweep
