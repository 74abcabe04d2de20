"""The non-finite guard: training stops at the first non-finite loss or gradient, naming the step
and the parameters (layers) where it appeared, without a host-device sync on every step.

Each step adds a few device operations: one fused norm over every gradient (before clipping, so
the raw gradient is judged) and a finiteness test of the loss; the first step where either is not
finite is recorded on the device (its batch number, epoch, loss and which gradients). The host
reads that record only every ``check_every`` steps (``trainer.log_every_n_steps``), before each
validation and at the end of an epoch and of training: so a run stops at most ``check_every``
steps after the fault, always before a checkpoint of the broken weights could be written, and
the message names the first faulty step, not the one where it was noticed. Checkpoints written
before the fault are kept.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

HINT = "gradients exploded or the learning rate is too high (try a lower optimizer.lr or trainer.gradient_clip_val)"


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss or gradient; the message says where and when."""


class NonFiniteGuard(pl.Callback):
    def __init__(self, check_every: int) -> None:
        self.check_every = max(1, int(check_every))
        self.batches = 0  # training batches so far (= optimizer steps: rnnlab does not accumulate)
        self.names: list[str] = []
        self._record: dict[str, Tensor] = {}

    # -- recording, on the device --------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.batches = trainer.global_step  # a resumed fit counts on
        self.names = [name for name, p in module.named_parameters() if p.requires_grad]
        device = module.device
        self._record = {
            "any": torch.zeros((), dtype=torch.bool, device=device),
            "batch": torch.full((), -1, dtype=torch.long, device=device),
            "epoch": torch.full((), -1, dtype=torch.long, device=device),
            "loss": torch.full((), float("nan"), device=device),
            "params": torch.zeros(len(self.names), dtype=torch.bool, device=device),
        }

    def _note(self, bad: Tensor, params: Tensor, epoch: int) -> None:
        """Record this batch as the first faulty one if ``bad`` (a device bool) and none was before."""
        r = self._record
        first = bad & ~r["any"]
        r["batch"] = torch.where(first, self.batches, r["batch"])
        r["epoch"] = torch.where(first, epoch, r["epoch"])
        r["params"] = torch.where(first, params, r["params"])
        r["any"] = r["any"] | bad

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: Any) -> None:
        if not self._record:
            return
        params = dict(module.named_parameters())
        index = [i for i, n in enumerate(self.names) if params[n].grad is not None]
        if not index:
            return
        norms = torch.stack(torch._foreach_norm([params[self.names[i]].grad for i in index]))  # type: ignore[misc]
        faulty = torch.zeros_like(self._record["params"])
        faulty[index] = ~torch.isfinite(norms)
        self._note(faulty.any(), faulty, trainer.current_epoch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._record:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor):
            loss = loss.detach().float().reshape(())
            r = self._record
            self._note(~torch.isfinite(loss), torch.zeros_like(r["params"]), trainer.current_epoch)
            r["loss"] = torch.where(r["batch"] == self.batches, loss, r["loss"])
        self.batches += 1
        if self.batches % self.check_every == 0:
            self.check()

    # -- checking, on the host ------------------------------------------------------------------

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.check()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.check()

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`NonFiniteError` if a fault was recorded (one device sync)."""
        r = self._record
        if not r or not bool(r["any"]):
            return
        names = [self.names[i] for i in torch.nonzero(r["params"]).flatten().tolist()]
        loss = float(r["loss"])
        where = (
            f"in the gradient of {names[0]}" + (f" and {len(names) - 1} more parameters" if len(names) > 1 else "")
            if names
            else "in the loss"
        )
        raise NonFiniteError(
            f"non-finite value {where} at epoch {int(r['epoch'])}, step {int(r['batch'])} "
            f"(loss {loss:.4g}); training stopped, checkpoints written before it are kept: {HINT}"
        )
