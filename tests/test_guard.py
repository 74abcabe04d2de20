"""rnnlab.guard: the first non-finite loss or gradient stops training, named by step and parameter."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from rnnlab.guard import NonFiniteError, NonFiniteGuard


class Faulty(pl.LightningModule):
    """Two layers; at ``bad_step`` the gradient of ``second`` only is made NaN (or the loss inf)."""

    def __init__(self, bad_step: int, where: str) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(2, 3), nn.Linear(3, 1)
        self.bad_step, self.where = bad_step, where

    def training_step(self, batch, batch_idx):
        x, y = batch
        hidden = self.first(x)
        if self.global_step == self.bad_step and self.where == "second":
            hidden = hidden.detach()  # the first layer gets no gradient from this step's NaN
            out = self.second(hidden) * torch.tensor(float("nan"))
        else:
            out = self.second(hidden)
        loss = ((out - y) ** 2).mean()
        if self.global_step == self.bad_step and self.where == "loss":
            loss = loss + torch.tensor(float("inf"))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(module, check_every, epochs=1, callbacks=()):
    data = torch.utils.data.TensorDataset(torch.randn(40, 2), torch.randn(40, 1))
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[NonFiniteGuard(check_every=check_every), *callbacks],
        logger=False,
        enable_checkpointing=bool(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    return trainer


def test_the_first_faulty_step_and_parameter_are_named_though_noticed_later():
    with pytest.raises(NonFiniteError) as err:
        _fit(Faulty(bad_step=3, where="second"), check_every=100)  # noticed only at the epoch's end
    message = str(err.value)
    assert "in the gradient of second.weight and 1 more parameters at epoch 0, step 3 " in message
    assert "first." not in message and "gradients exploded" in message and "\n" not in message


def test_a_non_finite_loss_is_named_when_the_gradients_are_not():
    with pytest.raises(NonFiniteError, match=r"^non-finite value in the loss at epoch 0, step 2 \(loss inf\)"):
        _fit(Faulty(bad_step=2, where="loss"), check_every=5)


def test_a_healthy_fit_passes():
    assert _fit(Faulty(bad_step=-1, where="loss"), check_every=1).global_step == 10


def test_the_checkpoint_before_the_fault_is_kept_and_none_after_it(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    saver = ModelCheckpoint(
        dirpath=tmp_path, save_last=True, save_top_k=-1, filename="e{epoch}", auto_insert_metric_name=False
    )
    with pytest.raises(NonFiniteError, match="at epoch 1, step 15 "):
        _fit(Faulty(bad_step=15, where="second"), check_every=100, epochs=3, callbacks=[saver])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e0.ckpt", "last.ckpt"]
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
