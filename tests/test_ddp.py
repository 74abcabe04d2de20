"""DDP on CPU (gloo, two processes): a sweep whose trials each run under DDP, and runs whose ranks torchrun
starts, on one node and on two."""

import subprocess
import sys
from pathlib import Path

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


def _torchrun(tmp_path, torchrun_args, *overrides):
    """``torchrun TORCHRUN_ARGS -m rnnlab OVERRIDES`` on a tiny model, DDP on CPU (gloo)."""
    from conftest import SMALL

    torchrun = str(Path(sys.executable).with_name("torchrun"))
    rnnlab = ["-m", "rnnlab", *SMALL, "trainer.strategy=ddp", "trainer.accelerator=cpu", "logger.log_checkpoint=false"]
    return subprocess.Popen(
        [torchrun, *torchrun_args, *rnnlab, *overrides],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _one_run(tmp_path, out):
    """What the processes left in MLflow: one FINISHED run, written by global rank 0 alone."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert run.info.status == "FINISHED", out[-3000:]
    assert "test/rmse" in run.data.metrics
    return run


@pytest.mark.slow
def test_torchrun_two_processes_one_run(tmp_path):
    """torchrun starts both ranks (Lightning detects its environment and starts none of its own)."""
    proc = _torchrun(tmp_path, ["--nproc_per_node", "2"], "trainer.devices=2")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in out and "GLOBAL_RANK: 1, MEMBER: 2/2" in out
    assert _one_run(tmp_path, out).data.params["trainer.devices"] == "2"


@pytest.mark.slow
def test_torchrun_two_nodes_one_run(tmp_path):
    """Two "nodes" of one process each (two torchrun on this machine, as on two machines): each node's
    process has LOCAL_RANK 0, and only the global rank 0 opens the MLflow run."""
    from conftest import free_port

    common = ["--nnodes", "2", "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    procs = [
        _torchrun(tmp_path, [*common, "--node_rank", str(n)], "trainer.devices=1", "trainer.num_nodes=2")
        for n in (0, 1)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in outs[0] and "GLOBAL_RANK: 1, MEMBER: 2/2" in outs[1]
    assert _one_run(tmp_path, outs[0]).data.params["trainer.num_nodes"] == "2"


@pytest.mark.slow
def test_torchrun_trains_in_chunks(tmp_path):
    """Truncated BPTT under DDP: Lightning prepares DDP's gradient reduction before each
    manual_backward, so each chunk's step is one all-reduced step on both ranks."""
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    copy = ["data=copy", "data.delay=6", "data.n_train=64", "data.n_val=16", "data.n_test=16", "data.batch_size=16"]
    run = [*copy, "backbone.hidden_size=8", "model.tbptt_steps=10", "trainer.max_epochs=2", *DDP]
    run += ["logger.log_checkpoint=false", "logger.log_model=false"]
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "rnnlab", *run],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run_,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert run_.info.status == "FINISHED" and run_.data.params["model.tbptt_steps"] == "10"
    assert "test/accuracy" in run_.data.metrics
    # 64 sequences on 2 ranks in batches of 16: 2 batches a rank an epoch (4 in one process), and
    # Lightning logs each epoch's validation at the batches stepped so far, less one
    steps = [m.step for m in client.get_metric_history(run_.info.run_id, "val/loss")]
    assert sorted(steps) == [1, 3] and run_.data.metrics["epochs"] == 2
