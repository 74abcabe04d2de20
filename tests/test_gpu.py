"""Checks that need a CUDA device (deselected by default; run with ``-m gpu`` on a GPU machine)."""

import pytest
import torch

from rnnlab.train import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("backbone", ["rnn", "lstm", "gru"])
def test_trains_on_gpu_deterministically(small_cfg, workdir, backbone):
    """cuDNN's fused RNNs under trainer.deterministic=true: the same seed gives the same metrics."""
    runs = [
        train(
            small_cfg(
                f"backbone={backbone}", "trainer.accelerator=gpu", "backbone.num_layers=2", f"output_dir={workdir}/{i}"
            )
        )
        for i in range(2)
    ]
    assert runs[0]["test/loss"] == runs[1]["test/loss"]
    assert runs[0]["val/loss"] == runs[1]["val/loss"]


def test_gpu_model_is_logged_and_loads_on_cpu(small_cfg, workdir):
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient

    train(small_cfg("trainer.accelerator=gpu", "logger.log_model=true"))
    uri = f"sqlite:///{workdir}/mlflow.db"
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])[0]
    assert run.info.status == "FINISHED"
    mlflow.set_tracking_uri(uri)
    net = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model", map_location="cpu")
    assert net(torch.randn(3, 16, 1)).shape == (3, 1)
