"""SequenceModel: one LightningModule for every task - backbone + regularizers + head + loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.backbone import Backbone
from rnnlab.errors import ConfigError
from rnnlab.regularizer import Regularizer
from rnnlab.task import TaskSpec

TARGETS = ("level", "change")
NORMALIZATIONS = ("none", "revin")
REVIN_EPS = 1e-5
DIFFERENCE_NEEDS = (
    "the backbone then reads changes only, and the level is lost: set model.target=change "
    "(predict the change from the last value) or model.normalize=revin (add the window's mean back)"
)


class SequenceNet(nn.Module):
    """The network alone (no Lightning), as logged to MLflow: ``net(x)`` gives predictions in the
    data's original units for regression tasks, logits for classification.

    ``lengths`` (B,), where given, are the valid steps of right-padded sequences; the backbone never
    reads the padding and last-step targets are read at each sequence's last valid step.

    **Forecasting options** (``model.*``; a forecasting task only, ``TaskSpec.forecast``: input
    column 0 is the target, scaled as the targets are). The net still takes the data module's
    scaled windows (B, W, C) and returns original units; every option lives inside it:

    - ``target="change"``: the head predicts the change from the last observed target value
      ``x[:, -1, 0]``, which is added to every horizon step.
    - ``normalize="revin"``: reversible instance normalization (Kim et al. 2022): each window's
      channels are normalized by their own mean and std over the window, then a learnable
      per-channel affine map; the output is mapped back with the target channel's statistics.
    - ``difference=True``: the backbone reads first differences of each (normalized) input channel,
      0 at the first step. Needs ``target="change"`` or ``normalize="revin"`` to keep the level.
    - ``linear_skip=True``: LSTNet's highway, a linear map from the (normalized) window's W * C lags
      to the horizon, added to the head's output. ``init_linear_skip`` sets it to the closed-form
      ridge fit and the head's last layer starts at zero, so the untrained net is that linear
      autoregression and the recurrent part learns the residual. Needs ``window`` (W).

    Every option changes the state dict only when on (``revin_weight``, ``revin_bias``,
    ``skip.*``): a net with all of them off has the keys it had before they existed.
    """

    target_scale: Tensor
    target_shift: Tensor
    # The forecasting options; class defaults, so a net pickled before they existed is a plain net.
    forecast_target: str = "level"
    normalize: str = "none"
    difference: bool = False
    linear_skip: bool = False
    # Token inputs (TaskSpec.tokens): ids (B, T) one-hot encoded to ``vocab`` channels; a class
    # default, so a net pickled before tokens existed reads float features.
    vocab: int = 0

    def __init__(
        self,
        backbone: Backbone,
        task: TaskSpec,
        regularizers: Sequence[Regularizer] = (),
        head_hidden: int = 0,
        *,
        target: str = "level",
        normalize: str = "none",
        difference: bool = False,
        linear_skip: bool = False,
        window: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.regularizers: Sequence[Regularizer] = nn.ModuleList(regularizers)  # type: ignore[assignment]
        if isinstance(backbone, Backbone):
            backbone.use_regularizers(list(regularizers))  # refuses hooks the backbone does not call
        elif any(reg.backbone_hooks() for reg in regularizers):
            raise ValueError(f"{type(backbone).__name__} is no rnnlab.backbone.Backbone: it calls no regularizer hooks")
        self.target = task.target
        self.vocab = task.input_size if task.tokens else 0
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
        self._set_forecast_options(task, target, normalize, difference, linear_skip, window)

    def _set_forecast_options(
        self, task: TaskSpec, target: str, normalize: str, difference: bool, linear_skip: bool, window: int | None
    ) -> None:
        if target not in TARGETS:
            raise ConfigError("model.target", f"invalid value {target!r}", TARGETS)
        if normalize not in NORMALIZATIONS:
            raise ConfigError("model.normalize", f"invalid value {normalize!r}", NORMALIZATIONS)
        chosen = {
            "model.target": target != "level",
            "model.normalize": normalize != "none",
            "model.difference": difference,
            "model.linear_skip": linear_skip,
        }
        on = [key for key, value in chosen.items() if value]
        if on and not (task.forecast and task.target == "last"):
            raise ConfigError(
                on[0],
                "is a forecasting option: it needs a forecasting task (windows whose input column 0 is the "
                "target, as rnnlab.series.SeriesDataModule gives); this data's task is no forecast",
            )
        if difference and target != "change" and normalize != "revin":
            raise ConfigError("model.difference", DIFFERENCE_NEEDS)
        self.forecast_target = target
        self.normalize = normalize
        self.difference = difference
        self.linear_skip = linear_skip
        if normalize == "revin":
            self.revin_weight = nn.Parameter(torch.ones(task.input_size))
            self.revin_bias = nn.Parameter(torch.zeros(task.input_size))
        if linear_skip:
            if not window or window < 1:
                raise ValueError("linear_skip needs the window length (window=W)")
            self.skip = nn.Linear(window * task.input_size, task.output_size)
            nn.init.zeros_(self.skip.weight)  # set by init_linear_skip
            nn.init.zeros_(self.skip.bias)
            # Fixed at the closed-form fit: the network learns the residual. Trained along, Adam's
            # first steps moved the ridge weights off their optimum and validation never recovered
            # (electricity: val loss 0.0018 at the start, 0.0019-0.0023 for 8 epochs after).
            self.skip.requires_grad_(False)
            last = self.head if isinstance(self.head, nn.Linear) else list(self.head.modules())[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)  # the untrained net is the linear skip alone
            nn.init.zeros_(last.bias)

    @property
    def forecasting(self) -> bool:
        """Whether any forecasting option is on."""
        return self.forecast_target != "level" or self.normalize != "none" or self.difference or self.linear_skip

    # -- the forecasting options' transforms -------------------------------------------------------

    def _normalized(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """RevIN's first half: windows (B, W, C) normalized per window and channel, then the affine
        map; and the target channel's mean and std (B, 1) to map the output back. As is without."""
        if self.normalize != "revin":
            return x, None
        mean = x.mean(1, keepdim=True).detach()
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + REVIN_EPS).detach()
        z = (x - mean) / std * self.revin_weight.to(x.dtype) + self.revin_bias.to(x.dtype)
        return z, (mean[:, :, 0], std[:, :, 0])

    def _denormalized(self, out: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """RevIN's second half: outputs (B, O) in the normalized target channel back to the window's
        scale (the affine map undone, then the target channel's std and mean)."""
        mean, std = stats
        weight = self.revin_weight[0].to(out.dtype) + REVIN_EPS**2
        return (out - self.revin_bias[0].to(out.dtype)) / weight * std + mean

    def _backbone_inputs(self, z: Tensor) -> Tensor:
        """What the backbone reads: the (normalized) window, or its first differences (0 first)."""
        if not self.difference:
            return z
        return torch.cat([torch.zeros_like(z[:, :1]), z[:, 1:] - z[:, :-1]], dim=1)

    def _refuse_lengths(self, lengths: Tensor | None) -> None:
        if lengths is not None and self.forecasting:
            raise ValueError("the forecasting options (model.target, normalize, ...) take whole windows, not lengths")

    @torch.no_grad()
    def init_linear_skip(self, x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor) -> float:
        """Set the linear skip to the closed-form ridge regression (:func:`rnnlab.forecast.ridge`)
        of the training windows' targets on their lags, its penalty chosen on the validation
        windows, in the space the skip works in: after RevIN, and of the change with
        ``target="change"``. Windows (N, W, C) and targets (N, O) as the data module gives them
        (scaled). Returns the chosen alpha."""
        from rnnlab import forecast

        if not self.linear_skip:
            raise ValueError("this net has no linear skip (linear_skip=False)")
        device = self.skip.weight.device

        def skip_space(x: Tensor, y: Tensor) -> tuple[Any, Any]:
            x = torch.as_tensor(x).to(device=device, dtype=torch.float64)
            y = torch.as_tensor(y).to(device=device, dtype=torch.float64).reshape(len(x), -1)
            z, stats = self._normalized(x)
            if stats is not None:  # the inverse of _denormalized
                mean, std = stats
                weight = self.revin_weight[0].double() + REVIN_EPS**2
                y = (y - mean) / std * weight + self.revin_bias[0].double()
            if self.forecast_target == "change":
                y = y - z[:, -1, :1]
            return z.cpu().numpy(), y.cpu().numpy()

        coef, alpha = forecast.ridge(*skip_space(x_train, y_train), *skip_space(x_val, y_val))
        coef_t = torch.from_numpy(coef).to(self.skip.weight)  # (W * C + 1, O), the intercept last
        self.skip.weight.copy_(coef_t[:-1].T)
        self.skip.bias.copy_(coef_t[-1])
        return float(alpha)

    # -- the forward pass ------------------------------------------------------------------------

    def encode(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        """Per-step features and the backbone's final state: (B, T, C) -> (B, T, H), state. ``x`` is
        what the backbone reads (after the forecasting options' input transforms)."""
        for reg in self.regularizers:
            x = reg.transform_inputs(x)
        if state is None and lengths is None:
            return self.backbone(x)  # (B, T, H), state; also a backbone written before lengths/state
        return self.backbone(x, state=state, lengths=lengths)

    def embed(self, x: Tensor) -> Tensor:
        """Token ids (B, T) one-hot encoded to (B, T, vocab) floats; float features as they are."""
        if not self.vocab:
            return x
        return F.one_hot(x.long(), self.vocab).to(self.head_dtype())

    def head_dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    def features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Per-step features of inputs ``x`` (B, T, C), or token ids (B, T), as the net takes them:
        (B, T, H)."""
        x = self.embed(x)
        if self.forecasting:
            self._refuse_lengths(lengths)
            x = self._backbone_inputs(self._normalized(x)[0])
        return self.encode(x, lengths=lengths)[0]  # (B, T, H)

    def head_out(self, h: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The head's output from per-step features: (B, T, H) -> (B, O) or (B, T, O). Without
        forecasting options, the scaled predictions / logits (``outputs`` adds the options' parts)."""
        for reg in self.regularizers:
            h = reg.transform(h)
        if self.target == "last":
            h = self.backbone.last_step(h) if lengths is None else self.backbone.last_step(h, lengths)  # (B, H)
        return self.head(h)

    def outputs(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-step features (B, T, H), for the regularizers' penalties, and the scaled predictions
        / logits the loss reads (B, O) or (B, T, O)."""
        if not self.forecasting:
            h = self.features(x, lengths)
            return h, self.head_out(h, lengths)
        self._refuse_lengths(lengths)
        z, stats = self._normalized(x)
        h = self.encode(self._backbone_inputs(z))[0]
        out = self.head_out(h)  # (B, O)
        if self.linear_skip:
            out = out + self.skip(z.flatten(1))  # lags in lag_matrix's order: step-major, then channel
        if self.forecast_target == "change":
            out = out + z[:, -1, :1]  # the last observed target value, for every horizon step
        if stats is not None:
            out = self._denormalized(out, stats)
        return h, out

    def chunk_outputs(self, x: Tensor, state: Any = None) -> tuple[Tensor, Tensor, Any]:
        """One chunk of a longer sequence, from the state the previous chunk ended in (None: the
        start): per-step features (B, Tc, H), the scaled predictions / logits (B, Tc, O) and the
        backbone's final state, the next chunk's start (truncated BPTT; per-step tasks only)."""
        h, state = self.encode(self.embed(x), state)  # (B, Tc, H), the backbone's state
        return h, self.head_out(h), state

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
        out = self.outputs(x, lengths)[1]
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
        *,
        tbptt_steps: int | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
    ) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._scheduler_interval = scheduler_interval
        self._scheduler_monitor = scheduler_monitor
        if tbptt_steps is not None:
            if tbptt_steps < 1:
                raise ValueError(f"tbptt_steps must be >= 1, got {tbptt_steps}")
            if task.target != "per_step":
                raise ValueError("truncated BPTT (tbptt_steps) needs a target at every step, this task has one")
            if net.forecasting:
                raise ValueError("truncated BPTT (tbptt_steps) cannot take the forecasting options (whole windows)")
            # Lightning 2 has no truncated BPTT of its own: training_step steps the optimizer itself,
            # once a chunk, and clips as the Trainer would (which refuses to clip for it)
            self.automatic_optimization = False
        self.tbptt_steps = tbptt_steps
        self.gradient_clip_val = gradient_clip_val or None
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self._sums: dict[str, Tensor] = {}
        self._train_loss: Tensor | None = None  # this epoch's sum of loss x batch size, on the device
        self._train_count = 0

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
            metrics[f"{stage}/bpc"] = sums["loss"] / n / math.log(2)  # nats -> bits per token
        else:
            metrics[f"{stage}/mae"] = sums["abs"] / n
            metrics[f"{stage}/mse"] = sums["sq"] / n
            metrics[f"{stage}/rmse"] = torch.sqrt(sums["sq"] / n)
        wanted = {f"{stage}/{m}" for m in self.task.metrics} | {f"{stage}/loss"}
        self.log_dict({k: v for k, v in metrics.items() if k in wanted}, on_epoch=True, sync_dist=False)

    def loss_of(self, out: Tensor, y: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The task's loss of outputs ``out`` against targets ``y`` (valid steps only), no penalties."""
        return self._loss(*self._valid(out, y, lengths))

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
        if self.tbptt_steps is not None:
            return self._truncated_step(x, y, lengths)
        h, out = self.net.outputs(x, lengths)  # (B, T, H), scaled predictions / logits
        loss = self.loss_of(out, y, lengths)
        self._record_train_loss(loss.detach(), len(x))
        for penalty in self.net.penalties(h, lengths):
            loss = loss + penalty
        return loss  # a non-finite loss or gradient is caught by rnnlab.guard, without a sync per step

    def _truncated_step(self, x: Tensor, y: Tensor, lengths: Tensor | None) -> Tensor:
        """Truncated BPTT on one batch: the sequences (B, T) cut into chunks of ``tbptt_steps``
        along time; each chunk starts from the state the previous one ended in, detached, so the
        graph (and memory) spans one chunk; each chunk's loss is backpropagated and the optimizer
        stepped (clipped first, the schedulers with ``interval="step"`` stepped after). With
        ``tbptt_steps >= T`` this is exactly the full-BPTT step. Returns the batch's loss, the mean
        over all its steps (as the full step's), detached: what the epoch's loss and the guard read."""
        if lengths is not None:
            raise ValueError(
                "truncated BPTT (model.tbptt_steps) takes equal-length sequences; this batch has lengths "
                "(variable-length, padded): set model.tbptt_steps=null"
            )
        optimizer = cast(Any, self.optimizers())
        steps, k = x.size(1), cast(int, self.tbptt_steps)
        total: Tensor | None = None  # the sum over chunks of loss x chunk length
        state = None
        for start in range(0, steps, k):
            stop = min(start + k, steps)
            h, out, state = self.net.chunk_outputs(x[:, start:stop], state)  # (B, Tc, H), (B, Tc, O)
            loss = self.loss_of(out, y[:, start:stop])  # the mean over the chunk's B x Tc targets
            part = loss.detach() * (stop - start)
            total = part if total is None else total + part
            for penalty in self.net.penalties(h):
                loss = loss + penalty
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()  # the guard and diagnostics see the raw gradient, then on_before_optimizer_step clips
            self._step_schedulers("step")
            state = _detached(state)  # carried on, without its history: the next graph starts here
        value = cast(Tensor, total) / steps
        self._record_train_loss(value, len(x))
        return value

    def _record_train_loss(self, value: Tensor, size: int) -> None:
        """The batch's loss into the epoch's sum, on the device (one operation), logged when the epoch
        ends; the batch's own value only on the batches that reach the logger
        (trainer.log_every_n_steps): self.log costs about 0.1 ms a call, a tenth of a small step.
        Batches, not optimizer steps, as Lightning's logger counts them: truncated BPTT steps the
        optimizer once a chunk."""
        if self._train_loss is None:
            self._train_loss = torch.zeros((), dtype=value.dtype, device=value.device)
        self._train_loss.add_(value, alpha=size)
        self._train_count += size
        batches = self.trainer.fit_loop.epoch_loop._batches_that_stepped  # before this one
        if (batches + 1) % self.trainer.log_every_n_steps == 0:  # type: ignore[attr-defined]
            self.log("train/loss_step", value, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clipping under manual optimization (truncated BPTT), where the Trainer refuses to clip: at
        the point it would clip, after the callbacks (the guard, diagnostics) read the raw gradient."""
        if not self.automatic_optimization and self.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )

    def _step_schedulers(self, interval: str) -> None:
        """Under manual optimization Lightning steps no scheduler: those with this ``interval`` are
        stepped here, a plateau scheduler with its monitored value (skipped while it is not logged)."""
        if self.automatic_optimization or self._scheduler is None or self._scheduler_interval != interval:
            return
        scheduler = cast(Any, self.lr_schedulers())
        if self._scheduler_monitor:
            value = self.trainer.callback_metrics.get(self._scheduler_monitor)
            if value is not None:
                scheduler.step(value)
        else:
            scheduler.step()

    def _eval_step(self, batch: tuple[Tensor, ...]) -> None:
        x, y, lengths = _unpack(batch)
        out = self.net.outputs(x, lengths)[1]
        self._accumulate(*self._valid(out, y, lengths))

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_train_epoch_start(self) -> None:
        self._train_loss, self._train_count = None, 0

    def on_train_epoch_end(self) -> None:
        """``train/loss_epoch`` to the logger and ``train/loss`` for callbacks (``monitor``): the
        mean over the epoch's samples (over every process under DDP). Lightning calls this before
        the checkpoint and early-stopping callbacks' own epoch end, so they see it."""
        self._log_train_loss()
        self._step_schedulers("epoch")  # after train/loss is logged: a plateau scheduler may watch it

    def _log_train_loss(self) -> None:
        if self._train_loss is None:
            return
        total, count = self._train_loss, torch.tensor(float(self._train_count), device=self._train_loss.device)
        if self.trainer.world_size > 1:
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
            count = self.trainer.strategy.reduce(count, reduce_op="sum")
        mean = total / count
        self.log("train/loss_epoch", mean, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/loss", mean, on_step=False, on_epoch=True, logger=False)
        self._train_loss = None

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
        if self._scheduler_monitor and self.automatic_optimization:  # else _step_schedulers reads it
            scheduler["monitor"] = self._scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _detached(state: Any) -> Any:
    """A backbone's state (a tensor, or a tuple / list of them, nested) cut from its graph."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(_detached(s) for s in state)
    return state


def _unpack(batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(x, y)`` or ``(x, y, lengths)``: inputs (B, T, C), targets, valid steps (B,) or None."""
    return batch[0], batch[1], (batch[2] if len(batch) > 2 else None)
