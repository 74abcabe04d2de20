"""Checkpoints and MLflow models written by rnnlab 0.1.0 still load, resume and test
(the fixture and how it was made: tests/fixtures/v0_1_0/README.md)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"
# The options the fixture was made with that fix its shapes; today's defaults may differ.
OVERRIDES = (
    "data=sine",
    "data.length=300",
    "data.window=8",
    "data.batch_size=32",
    "backbone=lstm",
    "backbone.hidden_size=4",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "logger.log_model=false",
    "seed=42",
    # 0.1.0 had no forecasting options: a model without them (today they are on for forecasting)
    "model.target=level",
    "model.difference=false",
    "model.linear_skip=false",
)


def _expected():
    data = json.loads((FIXTURE / "expected.json").read_text())
    return torch.tensor(data["x"]), torch.tensor(data["y"])


def test_checkpoint_loads_with_weights_only_into_todays_model(workdir):
    from rnnlab.composition import compose
    from rnnlab.train import build

    ckpt = torch.load(FIXTURE / "last.ckpt", weights_only=True)
    assert "net.backbone.rnn.weight_ih_l0" in ckpt["state_dict"]
    _, model = build(compose([*OVERRIDES, f"output_dir={workdir}/out"]))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    x, y = _expected()
    with torch.no_grad():
        assert torch.allclose(model.eval().net(x), y, atol=1e-6)


def test_logged_model_loads_and_predicts_the_same():
    import mlflow.pytorch

    model = mlflow.pytorch.load_model(str(FIXTURE / "model"))
    x, y = _expected()
    with torch.no_grad():
        assert torch.allclose(model(x), y, atol=1e-5)


def test_resume_from_an_old_checkpoint_trains_on_and_tests(workdir):
    from conftest import run_cli
    from mlflow.tracking import MlflowClient

    ckpt = workdir / "old.ckpt"
    shutil.copy(FIXTURE / "last.ckpt", ckpt)
    res = run_cli([*OVERRIDES, "trainer.max_epochs=2", f"resume={ckpt}"], workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 epochs" in res.stdout and "test/rmse" in res.stdout
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["epochs"] == pytest.approx(2)
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 1  # epoch 0 came from the checkpoint
