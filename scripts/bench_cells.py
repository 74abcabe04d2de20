"""Explicit cells, weight drop and gradient-flow diagnostics, each against its baseline run side
by side in this process.

    python scripts/bench_cells.py [--repeats 7] [--epochs 3] [--skip-diagnostics | --skip-kernels]

1. Forward + backward of one batch (T 50, batch 64, 32 inputs, one layer, CPU): each backbone with
   ``kernel=cell`` against the same backbone fused, at hidden 64 and 256; weight drop (p 0.2, the
   fused kernel on masked weights) against plain fused. Interleaved repeats after a warm-up; the
   median time of each and the median of the per-repeat ratios. There is nothing to compile
   (eager PyTorch), so no compile time to report apart.
2. Training with ``diagnostics.enabled=true`` (every epoch) against without, on the default
   experiment for ``--epochs`` epochs (early stopping off), interleaved runs: the median of
   ``train_seconds`` of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _backbone(name: str, hidden: int, kernel: str) -> torch.nn.Module:
    from rnnlab_plugins.backbones.config import GRUConfig, LSTMConfig, RNNConfig

    from rnnlab.testing import build

    schema = {"rnn": RNNConfig, "lstm": LSTMConfig, "gru": GRUConfig}[name](hidden_size=hidden, kernel=kernel)
    return build("backbone", schema, input_size=32)


def _step_time(backbone: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    out, _ = backbone(x)
    out.sum().backward()
    return time.perf_counter() - start


def bench_kernels(repeats: int) -> list[str]:
    from rnnlab_plugins.regularizers.research import WeightDrop, Zoneout

    torch.manual_seed(0)
    x = torch.randn(64, 50, 32)
    lines = [
        "| backbone | hidden | fused (ms) | compared | its time (ms) | ratio (median) |",
        "|---|---|---|---|---|---|",
    ]
    for hidden in (64, 256):
        for name in ("rnn", "lstm", "gru"):
            fused, cell = _backbone(name, hidden, "fused"), _backbone(name, hidden, "cell")
            cell.load_state_dict(fused.state_dict())
            dropped = _backbone(name, hidden, "fused")
            dropped.load_state_dict(fused.state_dict())
            dropped.use_regularizers([WeightDrop(p=0.2).train()])
            zoned = _backbone(name, hidden, "fused")  # zoneout selects kernel=cell itself
            zoned.load_state_dict(fused.state_dict())
            zoned.use_regularizers([Zoneout(p_hidden=0.1, p_cell=0.1).train()])
            models = {"fused": fused, "cell": cell, "zoneout": zoned, "weight_drop": dropped}
            times: dict[str, list[float]] = {key: [] for key in models}
            for model in models.values():  # warm-up
                _step_time(model, x)
            for _ in range(repeats):
                for key, model in models.items():
                    times[key].append(_step_time(model, x))
            base = statistics.median(times["fused"]) * 1e3
            labels = {"cell": "kernel=cell", "zoneout": "zoneout 0.1 (cells)", "weight_drop": "weight drop 0.2"}
            for key, label in labels.items():
                ratios = [t / f for t, f in zip(times[key], times["fused"], strict=True)]
                lines.append(
                    f"| {name} | {hidden} | {base:.1f} | {label} "
                    f"| {statistics.median(times[key]) * 1e3:.1f} | {statistics.median(ratios):.2f}x |"
                )
                print(lines[-1], flush=True)
    return lines


def bench_diagnostics(epochs: int, repeats: int) -> list[str]:
    from rnnlab.composition import compose
    from rnnlab.train import train

    seconds: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for i in range(repeats):
            for on in (False, True):
                cfg = compose(
                    [
                        f"trainer.max_epochs={epochs}",
                        "trainer.early_stopping.enabled=false",
                        f"diagnostics.enabled={str(on).lower()}",
                        "logger.log_model=false",
                        f"output_dir=run{i}-{on}",
                    ]
                )
                seconds[on].append(train(cfg)["train_seconds"])
                print(f"  diagnostics {'on ' if on else 'off'}: {seconds[on][-1]:.1f} s", flush=True)
    ratios = [a / b for a, b in zip(seconds[True], seconds[False], strict=True)]
    return [
        "| default experiment | training time (median s) | ratio (median) |",
        "|---|---|---|",
        f"| diagnostics off | {statistics.median(seconds[False]):.1f} | 1.00x |",
        f"| diagnostics on, every epoch | {statistics.median(seconds[True]):.1f} | {statistics.median(ratios):.2f}x |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--diagnostics-repeats", type=int, default=3)
    parser.add_argument("--skip-diagnostics", action="store_true")
    parser.add_argument("--skip-kernels", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "plugins"))
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.repeats} interleaved repeats"
    )
    lines = [] if args.skip_kernels else bench_kernels(args.repeats)
    if not args.skip_diagnostics:
        lines += ["", *bench_diagnostics(args.epochs, args.diagnostics_repeats)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
