"""SequenceModel: one LightningModule for every task - backbone + regularizers + head + loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.backbone import Backbone
from rnnlab.regularizer import Regularizer
from rnnlab.task import TaskSpec


class SequenceNet(nn.Module):
    """The network alone (no Lightning), as logged to MLflow: ``net(x)`` gives predictions in the
    data's original units for regression tasks, logits for classification.

    ``lengths`` (B,), where given, are the valid steps of right-padded sequences; the backbone never
    reads the padding and last-step targets are read at each sequence's last valid step.
    """

    target_scale: Tensor
    target_shift: Tensor

    def __init__(
        self,
        backbone: Backbone,
        task: TaskSpec,
        regularizers: Sequence[Regularizer] = (),
        head_hidden: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.regularizers: Sequence[Regularizer] = nn.ModuleList(regularizers)  # type: ignore[assignment]
        if isinstance(backbone, Backbone):
            backbone.use_regularizers(list(regularizers))  # refuses hooks the backbone does not call
        elif any(reg.backbone_hooks() for reg in regularizers):
            raise ValueError(f"{type(backbone).__name__} is no rnnlab.backbone.Backbone: it calls no regularizer hooks")
        self.target = task.target
        width = backbone.output_size
        if head_hidden > 0:
            self.head: nn.Module = nn.Sequential(
                nn.Linear(width, head_hidden), nn.ReLU(), nn.Linear(head_hidden, task.output_size)
            )
        else:
            self.head = nn.Linear(width, task.output_size)
        scale = torch.tensor(task.target_scale or [1.0] * task.output_size)
        shift = torch.tensor(task.target_shift or [0.0] * task.output_size)
        self.register_buffer("target_scale", scale, persistent=True)
        self.register_buffer("target_shift", shift, persistent=True)

    def encode(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        """Per-step features and the backbone's final state: (B, T, C) -> (B, T, H), state."""
        for reg in self.regularizers:
            x = reg.transform_inputs(x)
        if state is None and lengths is None:
            return self.backbone(x)  # (B, T, H), state; also a backbone written before lengths/state
        return self.backbone(x, state=state, lengths=lengths)

    def features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.encode(x, lengths=lengths)[0]  # (B, T, H)

    def head_out(self, h: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Scaled predictions / logits from per-step features: (B, T, H) -> (B, O) or (B, T, O)."""
        for reg in self.regularizers:
            h = reg.transform(h)
        if self.target == "last":
            h = self.backbone.last_step(h) if lengths is None else self.backbone.last_step(h, lengths)  # (B, H)
        return self.head(h)

    def penalties(self, h: Tensor, lengths: Tensor | None = None) -> list[Tensor]:
        """The regularizers' loss terms, in order: on features ``h`` (B, T, H), then on the
        backbone's recurrent weights."""
        terms: list[Tensor | None] = []
        weights = None
        for reg in self.regularizers:
            # Without lengths, call as before lengths existed, so older regularizers keep working.
            terms.append(reg.penalty(h) if lengths is None else reg.penalty(h, lengths=lengths))
            if reg.overrides("weight_penalty"):
                weights = self.backbone.recurrent_weights() if weights is None else weights
                terms.append(reg.weight_penalty(weights))
        return [t for t in terms if t is not None]

    def unscale(self, y: Tensor) -> Tensor:
        return y * self.target_scale + self.target_shift

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        out = self.head_out(self.features(x, lengths), lengths)
        return self.unscale(out) if self.target_scale is not None else out


class SequenceModel(pl.LightningModule):
    """Trains a SequenceNet. Optimizer and scheduler come as factories (``params -> Optimizer``),
    so the module takes plain objects and stays usable without Hydra.

    A batch is ``(x, y)`` or ``(x, y, lengths)``; with lengths, per-step targets count at valid
    steps only (loss and metrics), and last-step targets are read at each sequence's last step.
    """

    def __init__(
        self,
        net: SequenceNet,
        task: TaskSpec,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._scheduler_interval = scheduler_interval
        self._scheduler_monitor = scheduler_monitor
        self._sums: dict[str, Tensor] = {}

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.net(x, lengths)

    # -- loss and metrics -------------------------------------------------------------------------

    def _loss(self, out: Tensor, y: Tensor) -> Tensor:
        if self.task.loss == "cross_entropy":
            return F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))
        if self.task.loss == "mae":
            return F.l1_loss(out, y)
        return F.mse_loss(out, y)

    def _accumulate(self, out: Tensor, y: Tensor) -> None:
        """Add this batch's sums, so epoch metrics are exact (not a mean of batch RMSEs)."""
        with torch.no_grad():
            n = torch.tensor(float(y.numel()), device=y.device)
            sums = {"n": n}
            if self.task.loss == "cross_entropy":
                logits = out.reshape(-1, out.size(-1))
                target = y.reshape(-1)
                sums["loss"] = F.cross_entropy(logits, target, reduction="sum")
                sums["correct"] = (logits.argmax(-1) == target).sum().float()
            else:
                err = out - y
                sums["loss"] = err.abs().sum() if self.task.loss == "mae" else err.pow(2).sum()
                err_orig = err * self.net.target_scale  # shift cancels in a difference
                sums["abs"] = err_orig.abs().sum()
                sums["sq"] = err_orig.pow(2).sum()
            for k, v in sums.items():
                self._sums[k] = self._sums.get(k, torch.zeros((), device=v.device)) + v.detach()

    def _epoch_metrics(self, stage: str) -> None:
        if not self._sums:
            return
        sums = {k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in self._sums.items()}
        self._sums = {}
        n = sums["n"].clamp_min(1)
        metrics = {f"{stage}/loss": sums["loss"] / n}
        if "correct" in sums:
            metrics[f"{stage}/accuracy"] = sums["correct"] / n
            metrics[f"{stage}/perplexity"] = torch.exp(sums["loss"] / n)
        else:
            metrics[f"{stage}/mae"] = sums["abs"] / n
            metrics[f"{stage}/rmse"] = torch.sqrt(sums["sq"] / n)
        wanted = {f"{stage}/{m}" for m in self.task.metrics} | {f"{stage}/loss"}
        self.log_dict({k: v for k, v in metrics.items() if k in wanted}, on_epoch=True, sync_dist=False)

    def _valid(self, out: Tensor, y: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-step outputs and targets at valid steps only: (B, T, ...) -> (N, ...); as they are
        for last-step targets or without lengths."""
        if lengths is None or self.task.target != "per_step":
            return out, y
        mask = torch.arange(y.size(1), device=y.device) < lengths.to(y.device)[:, None]  # (B, T)
        return out[mask], y[mask]

    # -- steps ------------------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y, lengths = _unpack(batch)
        h = self.net.features(x, lengths)  # (B, T, H)
        out = self.net.head_out(h, lengths)
        loss = self._loss(*self._valid(out, y, lengths))
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(x),
            sync_dist=self.trainer.world_size > 1,
        )
        for penalty in self.net.penalties(h, lengths):
            loss = loss + penalty
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}: "
                "gradients exploded or the learning rate is too high (try a lower optimizer.lr or "
                "trainer.gradient_clip_val)"
            )
        return loss

    def _eval_step(self, batch: tuple[Tensor, ...]) -> None:
        x, y, lengths = _unpack(batch)
        out = self.net.head_out(self.net.features(x, lengths), lengths)
        self._accumulate(*self._valid(out, y, lengths))

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._sums = {}

    def on_test_epoch_start(self) -> None:
        self._sums = {}

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    # -- optimization -----------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizer = self._optimizer(params=self.parameters())
        if self._scheduler is None:
            return optimizer
        scheduler: dict[str, Any] = {
            "scheduler": self._scheduler(optimizer=optimizer),
            "interval": self._scheduler_interval,
        }
        if self._scheduler_monitor:
            scheduler["monitor"] = self._scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _unpack(batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(x, y)`` or ``(x, y, lengths)``: inputs (B, T, C), targets, valid steps (B,) or None."""
    return batch[0], batch[1], (batch[2] if len(batch) > 2 else None)
