"""The Optuna sweeper end to end on ``python -m rnnlab`` (tiny settings: sine data, 3 epochs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}

pytest.importorskip("rnnlab.train")


def test_rnnlab_sweep_prunes_and_nests_mlflow_runs(tmp_path: Path) -> None:
    from conftest import sweep_args
    from mlflow.tracking import MlflowClient

    cmd = [
        sys.executable,
        "-m",
        "rnnlab",
        *sweep_args("s", n_trials=5, seed=0),
        "backbone=gru",
        "data=sine",
        "data.length=600",
        "trainer.max_epochs=4",
        "trainer.early_stopping.enabled=false",
        "backbone.hidden_size=8",
        "logger.log_model=false",
        "logger.log_checkpoint=false",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=ENV, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = study.get_trials()
    assert len(trials) == 5
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert any(t.state == TrialState.PRUNED for t in trials), [t.intermediate_values for t in trials]
    assert all(len(t.intermediate_values) >= 1 for t in trials)  # every epoch reported by PruningCallback

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("rnnlab.sweep") == "true"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best/val/loss"] == pytest.approx(study.best_value)
    children = {
        int(r.data.tags["optuna.trial_number"]): r.data.tags["optuna.trial_state"]
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert children == {t.number: t.state.name for t in trials}

    # a sweep run first in a fresh directory keeps its artifacts beside the store, as runs do
    assert all(r.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri()) for r in runs)
    assert not (tmp_path / "mlruns").exists()

    # the same study with another model is refused before any trial, in one line
    other = subprocess.run(
        [*[a if a != "backbone=gru" else "backbone=lstm" for a in cmd], "hydra.sweeper.n_trials=6"],
        cwd=tmp_path,
        env=ENV,
        text=True,
        capture_output=True,
        timeout=120,
    )
    err = [ln for ln in other.stderr.splitlines() if ln.strip()]
    assert other.returncode == 2 and len(err) == 1, other.stderr[-3000:]
    assert 'fixed backbone: "gru" -> "lstm"' in err[0] and "set hydra.sweeper.study_name=s-2" in err[0], err[0]
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials) == 5

    sweep_dir = tmp_path / "multirun" / "s"
    single = subprocess.run(
        [sys.executable, "-m", "rnnlab", "--config-dir", str(sweep_dir), "--config-name", "best", "--cfg", "job"],
        cwd=tmp_path,
        env=ENV,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert single.returncode == 0, single.stderr
    assert f"lr: {study.best_params['optimizer.lr']}" in single.stdout


def test_a_sweep_on_a_test_score_reports_its_best_trial_beside_the_baselines(tmp_path: Path) -> None:
    import yaml
    from conftest import sweep_args
    from mlflow.tracking import MlflowClient

    cmd = [
        sys.executable,
        "-m",
        "rnnlab",
        *sweep_args("b", n_trials=2, seed=0),
        "hydra.sweeper.objective=test/rmse",
        "data=sine",
        "data.length=600",
        "trainer.max_epochs=2",
        "backbone.hidden_size=8",
        "logger.log_model=false",
        "logger.log_checkpoint=false",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=ENV, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    study = optuna.load_study(study_name="b", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    best = study.best_trial

    results = yaml.safe_load((tmp_path / "multirun" / "b" / "optimization_results.yaml").read_text())
    baselines = results["baselines"]
    assert set(baselines) == {f"{n}/test/rmse" for n in ("persistence", "drift", "linear_ar")}  # sine: no season
    name = min(baselines, key=baselines.__getitem__).split("/")[0]
    assert results["verdict"].startswith(f"best baseline: {name} (test/rmse ")
    assert f"trial {best.number}'s test/rmse {best.value:.4g}" in results["verdict"]
    assert results["verdict"] in proc.stdout + proc.stderr

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("rnnlab.sweep") == "true"]
    assert parent.data.tags["best.verdict"] == results["verdict"]
    best_run = next(r for r in runs if r.data.tags.get("optuna.trial_number") == str(best.number))
    for key, value in baselines.items():
        assert parent.data.metrics[f"best/baseline/{key}"] == pytest.approx(value)
        assert best_run.data.metrics[f"baseline/{key}"] == pytest.approx(value)
