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


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_keeps_the_fused_kernel_and_trains(small_cfg, precision):
    from rnnlab.train import build, slow_path

    net = build(small_cfg("trainer.accelerator=gpu", f"trainer.precision={precision}"))[1].net
    assert slow_path(net, precision, "cuda") is None  # the fused module: cuDNN's kernel
    out = train(small_cfg("trainer.accelerator=gpu", f"trainer.precision={precision}"))
    assert torch.isfinite(torch.tensor(out["test/loss"]))


@pytest.mark.parametrize("share", [0.25, 0.0])
def test_data_is_resident_on_the_gpu_when_it_fits_and_pinned_otherwise(small_cfg, share, monkeypatch):
    """Small data moves to the device once (batches are cut there); with no room for it
    (share 0) batches are cut on the host into pinned memory."""
    import pytorch_lightning as pl

    import rnnlab.data as data
    import rnnlab.train as rt

    monkeypatch.setattr(data, "RESIDENT_SHARE", share)
    seen = []

    class Look(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 0:
                seen.append((trainer.datamodule._placed[1], batch[0].device.type))

    original = rt._callbacks
    monkeypatch.setattr(rt, "_callbacks", lambda *a, **k: [*original(*a, **k), Look()])
    train(small_cfg("trainer.accelerator=gpu"))
    assert seen and seen[0] == ("device" if share else "pinned", "cuda")
