"""Peak memory of a training step against the sequence length: truncated BPTT against full BPTT.

    python scripts/bench_tbptt.py                       # T = 1,000 and 10,000, k = 100
    python scripts/bench_tbptt.py --lengths 1000 10000 --k 100 --hidden 128 --batch 16

Every configuration (T, with and without ``model.tbptt_steps=k``) runs in a fresh process, through
rnnlab's own path: the real config composed (``data=chars`` with ``data.length=T``), ``build`` and
rnnlab's Trainer flags, one epoch of two training batches. Measured on the second batch (the first
warms up: the optimizer's state, Lightning's first-step work): the process's resident set size (RSS)
before the batch, and its high-water mark during the batch, reset just before it (writing 5 to
``/proc/self/clear_refs``, Linux). A training step's peak memory is the difference: what the step
holds at its worst beyond what was there before it (model, data, optimizer state, interpreter).

torch's CPU allocator takes memory from glibc's malloc, which keeps freed blocks below its mmap
threshold for reuse (and raises that threshold as large blocks are freed), so RSS could miss
memory the step reuses. The children run with ``MALLOC_MMAP_THRESHOLD_=65536``: every block of
64 KiB or more is mapped on its own and returned when freed, so RSS follows the tensors torch holds.
``tracemalloc`` sees no torch allocations; ``torch.profiler``'s memory records would also do, at
much greater cost for 10,000-step sequences.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) * 1024 for key in ("VmRSS", "VmHWM")}  # type: ignore[union-attr]


def child(args: argparse.Namespace) -> None:
    """One configuration: build, fit two batches, print the second batch's memory as JSON."""
    import pytorch_lightning as pl
    import torch

    from rnnlab.composition import compose
    from rnnlab.train import _quiet, _trainer, build

    _quiet()
    torch.set_num_threads(args.threads)
    overrides = [
        "data=chars",
        f"data.max_chars={args.chars}",
        f"data.length={args.length}",
        f"data.batch_size={args.batch}",
        "data.eval_batch_size=1",
        "data.sample_chars=0",
        "backbone=lstm",
        f"backbone.hidden_size={args.hidden}",
        f"model.tbptt_steps={args.k if args.k else 'null'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "logger.log_model=false",
        f"output_dir={args.out}",
    ]
    cfg = compose(overrides)
    pl.seed_everything(0, verbose=False)
    dm, model = build(cfg)

    class Peak(pl.Callback):
        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == 1:
                self.before = _status()["VmRSS"]
                Path("/proc/self/clear_refs").write_text("5")  # the high-water mark := RSS now
                self.started = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == 1:
                self.seconds = time.perf_counter() - self.started
                self.peak = _status()["VmHWM"]

    peak = Peak()
    trainer = _trainer(cfg, [peak], False, Path(args.out))
    trainer.fit(model, datamodule=dm)
    print(
        json.dumps(
            {
                "length": args.length,
                "k": args.k,
                "step_peak_mb": (peak.peak - peak.before) / 2**20,
                "rss_before_mb": peak.before / 2**20,
                "rss_peak_mb": peak.peak / 2**20,
                "seconds": peak.seconds,
                "optimizer_steps": trainer.global_step,
            }
        )
    )


def run(length: int, k: int | None, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One configuration in a fresh process."""
    cmd = [sys.executable, __file__, "--child", "--length", str(length), "--k", str(k or 0)]
    cmd += ["--hidden", str(args.hidden), "--batch", str(args.batch), "--chars", str(args.chars)]
    cmd += ["--threads", str(args.threads), "--out", str(out / f"T{length}_k{k or 0}")]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out)
    if done.returncode != 0:
        raise SystemExit(f"T={length} k={k}: failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs=2, default=[1000, 10000], metavar=("SHORT", "LONG"))
    p.add_argument("--k", type=int, default=100, help="model.tbptt_steps")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--chars", type=int, default=400_000, help="data.max_chars (two batches of the longest)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="outputs/bench_tbptt")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    short, long = args.lengths
    print(f"LSTM {args.hidden}, batch {args.batch}, data=chars, {args.threads} thread(s); torch CPU")
    print(f"{'mode':<22}{'T':>8}{'step peak MB':>14}{'RSS before':>12}{'RSS peak':>10}{'s/batch':>9}{'opt steps':>11}")
    rows = {}
    for k in (args.k, None):
        for length in (short, long):
            r = run(length, k, args, out)
            rows[(k, length)] = r
            mode = f"truncated, k={k}" if k else "full BPTT"
            print(
                f"{mode:<22}{length:>8,}{r['step_peak_mb']:>14.1f}{r['rss_before_mb']:>12.0f}"
                f"{r['rss_peak_mb']:>10.0f}{r['seconds']:>9.2f}{r['optimizer_steps']:>11}"
            )
    for k in (args.k, None):
        mode = f"truncated BPTT (k={k})" if k else "full BPTT"
        ratio = rows[(k, long)]["step_peak_mb"] / rows[(k, short)]["step_peak_mb"]
        print(f"{mode}: step peak at T={long:,} / at T={short:,} = {ratio:.2f}x")


if __name__ == "__main__":
    main()
