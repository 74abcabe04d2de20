"""The non-finite guard: training stops at the first non-finite loss or gradient, naming the step
and the parameters (layers) where it appeared, without a host-device sync on every step.

Each step adds three device operations: one fused norm over every gradient (before clipping, so
the raw gradient is judged), written as one row of a device buffer, and a copy of the loss into
another (the step and epoch of each row are kept on the host, where they are known). Whether they
are finite is judged when the host reads the buffers, only every ``check_every`` steps
(``trainer.log_every_n_steps``), before each validation and at the end of an epoch and of
training: so a run stops at most ``check_every``
steps after the fault, always before a checkpoint of the broken weights could be written, and
the message names the first faulty step, not the one where it was noticed. Checkpoints written
before the fault are kept.
"""

from __future__ import annotations

from collections.abc import Callable
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
        self.batches = 0  # training batches so far (one row each; truncated BPTT steps several times a batch)
        self.names: list[str] = []
        self.params: list[Tensor] = []
        # one row a step since the last check: each parameter's gradient norm, and the loss
        self.norms: Tensor | None = None
        self.losses: Tensor | None = None
        self.rows: list[tuple[int, int]] = []  # (step, epoch) of each row: host values, no sync
        # called with each window of gradient norms (steps, parameters), on the device, before it is
        # cleared: the diagnostics sum them there instead of measuring every step again
        self.listeners: list[Callable[[Tensor], None]] = []
        self._stepped = False  # whether this batch's row holds an optimizer step's norms already

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.batches = trainer.global_step  # a resumed fit counts on
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        self.names, self.params = [n for n, _ in named], [p for _, p in named]
        dtype = self.params[0].dtype if self.params else torch.float32
        self.norms = torch.zeros(self.check_every, len(self.params), dtype=dtype, device=module.device)
        self.losses = torch.full((self.check_every,), float("nan"), device=module.device)
        self.rows = []

    # -- recording, on the device --------------------------------------------------------------

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: Any) -> None:
        if self.norms is None:
            return
        grads = [p.grad for p in self.params]
        row = self.norms[len(self.rows)]
        # Truncated BPTT steps the optimizer once a chunk, several times a batch: the batch's row
        # keeps each parameter's largest norm over its chunks (a non-finite one stays non-finite).
        target = row if not self._stepped else torch.empty_like(row)
        if all(g is not None for g in grads):
            torch.stack(torch._foreach_norm(grads), out=target)  # type: ignore[arg-type]
        else:  # a parameter without a gradient this step (rare): its norm is 0
            target.zero_()
            for i, g in enumerate(grads):
                if g is not None:
                    target[i] = g.norm()
        if self._stepped:
            torch.maximum(row, target, out=row)
        self._stepped = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.norms is None or self.losses is None:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor):
            self.losses[len(self.rows)] = loss.detach().reshape(())
        else:  # no loss this step (a skipped batch): nothing to judge
            self.losses[len(self.rows)] = 0.0
        self._stepped = False
        self.rows.append((self.batches, trainer.current_epoch))
        self.batches += 1
        if len(self.rows) == self.check_every:
            self.check()

    # -- checking, on the host ------------------------------------------------------------------

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.check()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.check()

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`NonFiniteError` if a step since the last check was faulty (one device sync);
        otherwise start a new window."""
        if self.norms is None or self.losses is None or not self.rows:
            return
        n = len(self.rows)
        for listener in self.listeners:
            listener(self.norms[:n])
        bad = torch.cat([~torch.isfinite(self.norms[:n]), ~torch.isfinite(self.losses[:n, None])], dim=1)
        faulty = torch.nonzero(bad.any(dim=1)).flatten().tolist()
        if not faulty:
            self.rows = []
            return
        first = faulty[0]
        step, epoch = self.rows[first]
        names = [self.names[i] for i in torch.nonzero(bad[first, :-1]).flatten().tolist()]
        loss = float(self.losses[first])
        where = (
            f"in the gradient of {names[0]}" + (f" and {len(names) - 1} more parameters" if len(names) > 1 else "")
            if names
            else "in the loss"
        )
        raise NonFiniteError(
            f"non-finite value {where} at epoch {epoch}, step {step} "
            f"(loss {loss:.4g}); training stopped, checkpoints written before it are kept: {HINT}"
        )
