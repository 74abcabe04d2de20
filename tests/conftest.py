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
