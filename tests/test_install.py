"""A user's install: rnnlab and the example plugin package (examples/rnnlab-indrnn) built as wheels and
installed into one fresh virtual environment; everything then runs from another directory.

Nothing in the checkout is touched: the wheels are built from a copy of the source tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone would not hold (and what must not go into the copy the wheels are built from).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "outputs",
    "multirun",
    "mlflow.db",
    "mlartifacts",
    "mlruns",
    "optuna.db",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "lightning_logs",
    ".whl",
)


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"{res.args}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.mark.slow
def test_wheels_in_a_fresh_venv_with_a_third_party_plugin_package(tmp_path: Path) -> None:
    import torch

    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    # the torch already in use (here the local CPU wheel), so the test never pulls a CUDA build
    _ok(_run([*pip, "install", "-q", f"torch=={torch.__version__.split('+')[0]}"], tmp_path, timeout=900))
    wheels = tmp_path / "wheels"
    for project in (source, source / "examples" / "rnnlab-indrnn"):
        _ok(_run([*pip, "wheel", "-q", "--no-deps", "-w", str(wheels), str(project)], tmp_path))
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert [name.split("-")[0] for name in built] == ["rnnlab", "rnnlab_indrnn"], built
    _ok(_run([*pip, "install", "-q", *map(str, wheels.glob("*.whl")), "pytest"], tmp_path, timeout=900))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def rnnlab(*args: str) -> subprocess.CompletedProcess[str]:
        return _run([python, "-m", "rnnlab", *args], elsewhere)

    # installed, not linked to a source tree; no Hydra plugin of the example's own
    where = _ok(
        _run(
            [python, "-c", "import rnnlab.conf, rnnlab_indrnn.conf as c; print(rnnlab.conf.__file__, c.__file__)"],
            elsewhere,
        )
    ).split()
    assert all("site-packages" in p for p in where), where
    site = Path(where[0]).parents[2]
    assert Path(where[1]).with_name("experiment").joinpath("indrnn_weather.yaml").is_file()
    assert not list(site.glob("hydra_plugins/*indrnn*")), "the example must not need a Hydra plugin"

    # listed by name
    plugins = _ok(_run([str(venv / "bin" / "rnnlab"), "plugins"], elsewhere))
    assert "indrnn " in plugins and "rnnlab_indrnn.indrnn:IndRNNBackbone" in plugins
    assert "seattle_weather " in plugins and "recurrent_max" in plugins
    help_text = _ok(rnnlab("--help"))
    groups = {line.split()[0]: line for line in help_text.splitlines() if line.startswith("  ") and line.split()}
    assert "indrnn" in groups["backbone"] and "seattle_weather" in groups["data"]
    assert "indrnn_weather" in groups["experiment"] and "indrnn_weather" in groups["sweep"]

    # trains by name and prints the results table
    out = _ok(rnnlab("backbone=indrnn", "data=seattle_weather", "trainer.max_epochs=1", "logger.log_model=false"))
    assert (
        "indrnn on seattle_weather" in out
        and "test/rmse" in out
        and "persistence (the last observed value)" in out
        and "best baseline:" in out
    ), out
    assert (elsewhere / "mlflow.db").is_file()

    # its options are validated: one line, exit 2
    bad = rnnlab("backbone=indrnn", "backbone.hidden_size=-1")
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert len(bad.stderr.strip().splitlines()) == 1 and "backbone.hidden_size" in bad.stderr, bad.stderr

    # its presets: an experiment, and a sweep of two trials
    _ok(rnnlab("experiment=indrnn_weather", "trainer.max_epochs=1"))
    _ok(rnnlab("-m", "sweep=indrnn_weather", "hydra.sweeper.n_trials=2", "trainer.max_epochs=1"))
    count = "import optuna; print(len(optuna.load_study(study_name='indrnn_weather', storage='sqlite:///optuna.db').trials))"
    assert _ok(_run([python, "-c", count], elsewhere)).strip() == "2"

    # the built-in plugins of the rnnlab wheel still train (the default data set ships in vega_datasets)
    out = _ok(
        rnnlab("backbone=gru", "trainer.max_epochs=1", "trainer.limit_train_batches=0.1", "logger.log_model=false")
    )
    assert "gru on electricity" in out

    # the example's own tests, as its author runs them, on the installed package
    tests = _run([python, "-m", "pytest", "-q"], source / "examples" / "rnnlab-indrnn")
    assert tests.returncode == 0 and " passed" in tests.stdout, tests.stdout[-4000:]
