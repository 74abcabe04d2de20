"""What rnnlab costs a training step over the loop one would write by hand.

    python scripts/bench_overhead.py [--repeats 5] [--steps 150] [--cases default,small,seed_b1,seed_b64]

For each case, the same model (rnnlab builds it, then each way trains its own copy of the same
initial weights), data, batches, optimizer and gradient clipping, trained three ways in this
process, interleaved, ``--repeats`` times:

- **loop**: a hand-written loop: forward, loss, backward, clip, step, zero_grad;
- **lightning**: a bare LightningModule doing the same in ``training_step`` and validating on the
  same batches as rnnlab (no logging, no callbacks, no checkpoints), in a ``pl.Trainer`` with the
  same clipping (a module with validation is what a Lightning user writes, and Lightning's loop
  asks on every step whether to validate);
- **rnnlab**: ``rnnlab.train.train(cfg)``, the whole run (MLflow logging, checkpoints, early
  stopping, the non-finite guard, validation and test).

The measure is the time from one training batch's start to the next's within an epoch (so data
loading, the optimizer, logging and every per-step hook count; validation, between epochs, does
not), over ``--steps`` steps after 10 of warm-up; its median over the steps, then the median over
repeats. Printed: steps/s of each, rnnlab's ratio to each, and its overhead per step in ms; then
the same from the main thread's CPU time per step, which a busy neighbour on a shared machine does not
inflate (torch's worker threads, used by the larger models, are not in it: the same for all three).

Cases: ``default`` (the default experiment: LSTM 64 on electricity, batch 128), ``small`` (the same
with hidden 8, batch 16), ``seed_b1`` and ``seed_b64`` (``experiment=seed_lstm`` at batch 1 and 64).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

CASES = {
    "default": [],
    "small": ["backbone.hidden_size=8", "data.batch_size=16"],
    "seed_b1": ["experiment=seed_lstm", "data.batch_size=1"],
    "seed_b64": ["experiment=seed_lstm", "data.batch_size=64"],
}
WARMUP = 10


class StepTimer:
    """Batch-start times; ``step_ms()``: the median gap between consecutive batches of an epoch, in
    wall time and in the main thread's CPU time. The CPU time leaves out the time the thread was not
    running (another process had the core), which dominates the spread of wall times on a shared
    machine; at these sizes torch runs each operation on the calling thread, so it holds all the
    step's work."""

    def __init__(self) -> None:
        self.starts: list[tuple[int, int, float, float]] = []  # (epoch, batch, wall, thread CPU)

    def mark(self, epoch: int, batch: int) -> None:
        self.starts.append((epoch, batch, time.perf_counter(), time.thread_time()))

    def step_ms(self, steps: int) -> tuple[float, float]:
        pairs = [
            (a, b) for a, b in zip(self.starts, self.starts[1:], strict=False) if a[0] == b[0] and b[1] == a[1] + 1
        ]
        pairs = pairs[WARMUP : WARMUP + steps]
        wall = statistics.median((b[2] - a[2]) * 1e3 for a, b in pairs)
        cpu = statistics.median((b[3] - a[3]) * 1e3 for a, b in pairs)
        return wall, cpu


def _callback(timer: StepTimer) -> Any:
    import pytorch_lightning as pl

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
            timer.mark(trainer.current_epoch, batch_idx)

    return Timer()


def _config(case: str, workdir: Path) -> Any:
    from rnnlab.composition import compose

    return compose(
        [
            *CASES[case],
            "trainer.enable_progress_bar=false",
            "trainer.early_stopping.enabled=false",
            "logger.log_model=false",
            f"logger.tracking_uri=sqlite:///{workdir}/mlflow.db",
            f"output_dir={workdir}/out",
        ]
    )


def _budget(dm: Any, steps: int) -> tuple[int, float, float, float]:
    """(epochs, limit_train_batches, limit_val_batches, limit_test_batches) for WARMUP + steps
    batch gaps within epochs, with validation and test kept short (they are not measured)."""
    need = WARMUP + steps + 2
    per_epoch = len(dm.train_dataloader())
    if per_epoch >= need:
        epochs, train = 1, need / per_epoch
    else:
        epochs, train = -(-need // (per_epoch - 1)), 1.0
    val = min(1.0, 20 / max(1, len(dm.val_dataloader())))
    test = min(1.0, 20 / max(1, len(dm.test_dataloader())))
    return epochs, train, val, test


def run_loop(cfg: Any, dm: Any, model: Any, steps: int) -> tuple[float, float]:
    net = model.net
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    clip = cfg.trainer.gradient_clip_val
    timer = StepTimer()
    net.train()
    done = 0
    epoch = 0
    while done < WARMUP + steps + 2:
        for i, batch in enumerate(dm.train_dataloader()):
            timer.mark(epoch, i)
            x, y = batch[0], batch[1]
            lengths = batch[2] if len(batch) > 2 else None
            out = net.outputs(x, lengths)[1]
            loss = model.loss_of(out, y, lengths)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            opt.zero_grad()
            done += 1
            if done >= WARMUP + steps + 2:
                break
        epoch += 1
    return timer.step_ms(steps)


def run_lightning(cfg: Any, dm: Any, model: Any, steps: int) -> tuple[float, float]:
    import pytorch_lightning as pl

    class Bare(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model.net

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            lengths = batch[2] if len(batch) > 2 else None
            return model.loss_of(self.net.outputs(batch[0], lengths)[1], batch[1], lengths)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            lengths = batch[2] if len(batch) > 2 else None
            model.loss_of(self.net.outputs(batch[0], lengths)[1], batch[1], lengths)

        def configure_optimizers(self) -> Any:
            return model.configure_optimizers()

    timer = StepTimer()
    clip = cfg.trainer.gradient_clip_val
    epochs, _, val, _ = _budget(dm, steps)
    trainer = pl.Trainer(
        max_epochs=epochs,
        max_steps=WARMUP + steps + 2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=val,  # validates as rnnlab does (not measured)
        num_sanity_val_steps=0,
        gradient_clip_val=clip,
        gradient_clip_algorithm="norm" if clip else None,
        deterministic=cfg.trainer.deterministic,
        callbacks=[_callback(timer)],
    )
    trainer.fit(Bare(), train_dataloaders=dm.train_dataloader(), val_dataloaders=dm.val_dataloader())
    return timer.step_ms(steps)


def run_rnnlab(cfg: Any, dm: Any, steps: int) -> tuple[float, float]:
    from omegaconf import open_dict

    import rnnlab.train as rt

    timer = StepTimer()
    epochs, train, val, test = _budget(dm, steps)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.trainer.max_epochs = epochs
        cfg.trainer.min_epochs = 1
        cfg.trainer.limit_train_batches = train
        cfg.trainer.limit_val_batches = val
        cfg.trainer.limit_test_batches = test
    original = rt._callbacks
    rt._callbacks = lambda *a, **k: [*original(*a, **k), _callback(timer)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the run's results table: not news here
            rt.train(cfg)
    finally:
        rt._callbacks = original
    return timer.step_ms(steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    import logging

    from rnnlab.train import build

    logging.disable(logging.WARNING)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; per-step medians over {args.steps} steps, median of {args.repeats} "
        "interleaved repeats",
        flush=True,
    )
    lines = [
        "| case | loop (steps/s) | lightning (steps/s) | rnnlab (steps/s) | rnnlab / loop | rnnlab / lightning "
        "| rnnlab - lightning (ms/step) | rnnlab - loop (ms/step) | rnnlab / loop, CPU | rnnlab - lightning, CPU "
        "(ms/step) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            ms: dict[str, list[tuple[float, float]]] = {"loop": [], "lightning": [], "rnnlab": []}
            for r in range(args.repeats):
                workdir = Path(tmp) / f"{case}-{r}"
                cfg, steps = _config(case, workdir), args.steps
                torch.manual_seed(cfg.seed)
                dm, model = build(cfg)
                initial = copy.deepcopy(model.state_dict())
                for way in ("loop", "lightning", "rnnlab"):
                    torch.manual_seed(cfg.seed)
                    model.load_state_dict(initial)
                    if way == "loop":
                        ms[way].append(run_loop(cfg, dm, model, steps))
                    elif way == "lightning":
                        ms[way].append(run_lightning(cfg, dm, model, steps))
                    else:
                        ms[way].append(run_rnnlab(cfg, dm, steps))
                times = ", ".join(f"{k} {v[-1][0]:.2f} ms ({v[-1][1]:.2f} CPU)" for k, v in ms.items())
                print(f"  {case} repeat {r + 1}: {times}", flush=True)
            med = {k: statistics.median(w for w, _ in v) for k, v in ms.items()}
            cpu = {k: statistics.median(c for _, c in v) for k, v in ms.items()}
            lines.append(
                f"| {case} | {1e3 / med['loop']:.0f} | {1e3 / med['lightning']:.0f} | {1e3 / med['rnnlab']:.0f} "
                f"| {med['loop'] / med['rnnlab']:.2f}x | {med['lightning'] / med['rnnlab']:.2f}x "
                f"| {med['rnnlab'] - med['lightning']:+.2f} | {med['rnnlab'] - med['loop']:+.2f} "
                f"| {cpu['loop'] / cpu['rnnlab']:.2f}x | {cpu['rnnlab'] - cpu['lightning']:+.3f} |"
            )
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    main()
