"""A plain, non-editable install into a fresh virtual environment works from any directory."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_in_fresh_venv_trains_from_another_directory(tmp_path):
    import torch

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # the torch already in use (here the local CPU wheel), so the test never pulls a CUDA build
    subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}"], check=True, timeout=900)
    subprocess.run([*pip, str(ROOT)], check=True, timeout=900)

    site = subprocess.run(
        [python, "-c", "import rnnlab.conf, os; print(os.path.dirname(rnnlab.conf.__file__))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert "site-packages" in site and Path(site, "backbone", "gru.yaml").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run(
        [python, "-m", "rnnlab", "backbone=gru", "trainer.max_epochs=1"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "gru on temperature" in res.stdout
    assert (elsewhere / "mlflow.db").is_file()
    res = subprocess.run([str(venv / "bin" / "rnnlab"), "--help"], cwd=elsewhere, capture_output=True, text=True)
    assert res.returncode == 0 and "backbone" in res.stdout
