"""What a run shows while it trains: a live bar on a terminal, one line per epoch otherwise.

``trainer.enable_progress_bar``: ``null`` (the default) picks by where the output goes - Lightning's
TQDM bar (epoch, step, loss, val metric, ETA) on a terminal, one plain line per epoch when the output
is a file or a pipe, and nothing extra under ``CI=true``; ``true`` / ``false`` force the bar on / off
(``false`` also drops the epoch lines).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def mode(enable_progress_bar: bool | None, stream: Any = None) -> str:
    """``"bar"``, ``"lines"`` or ``"none"`` for the setting and where ``stream`` (stderr) goes."""
    if enable_progress_bar is not None:
        return "bar" if enable_progress_bar else "none"
    if os.environ.get("CI", "").lower() == "true":
        return "none"
    stream = sys.stderr if stream is None else stream
    return "bar" if getattr(stream, "isatty", lambda: False)() else "lines"


def callbacks(enable_progress_bar: bool | None, monitor: str, stream: Any = None) -> tuple[bool, list[Any]]:
    """``(Lightning's enable_progress_bar, extra callbacks)`` for the chosen mode."""
    chosen = mode(enable_progress_bar, stream)
    if chosen == "lines":
        return False, [_epoch_lines_class()(monitor, stream)]
    return chosen == "bar", []


def _format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _define() -> type:
    import pytorch_lightning as pl

    class _EpochLines(pl.Callback):
        """One line per finished epoch: its number of max, the epoch's losses and monitored metric,
        the time so far and an estimate of the time left (if every epoch runs)."""

        def __init__(self, monitor: str, stream: Any = None) -> None:
            self.monitor = monitor
            self.stream = stream
            self._start = 0.0

        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self._start = time.perf_counter()
            self._first_epoch = trainer.current_epoch
            self._pending: int | None = None

        # Lightning computes an epoch's training metrics after on_train_epoch_end: the line for an
        # epoch is printed when the next one starts, or when training ends.
        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if not trainer.sanity_checking:
                self._pending = trainer.current_epoch

        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self._print(trainer)

        def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self._print(trainer)

        def _print(self, trainer: pl.Trainer) -> None:
            if self._pending is None or not trainer.is_global_zero:
                return
            epoch, self._pending = self._pending + 1, None
            metrics = trainer.callback_metrics
            shown = [
                f"{name.replace('_epoch', '')} {float(metrics[name]):.4g}"
                for name in dict.fromkeys(["train/loss_epoch", "val/loss", self.monitor])
                if name in metrics
            ]
            elapsed = time.perf_counter() - self._start
            done = max(epoch - self._first_epoch, 1)
            left = (trainer.max_epochs or epoch) - epoch
            eta = f", about {_format_seconds(elapsed / done * left)} left" if left > 0 else ""
            line = f"epoch {epoch}/{trainer.max_epochs}  " + "  ".join(shown) + f"  ({_format_seconds(elapsed)}{eta})"
            print(line, file=self.stream or sys.stderr, flush=True)

    return _EpochLines


_LAZY: dict[str, type] = {}


def _epoch_lines_class() -> type:
    """The Lightning callback, defined on first use (Lightning is imported only when a run starts)."""
    if "EpochLines" not in _LAZY:
        _LAZY["EpochLines"] = _define()
    return _LAZY["EpochLines"]
