"""Every regularizer against none, on a real task: the character-level language model.

    python scripts/bench_regularizers.py [--seeds 2] [--epochs 12] [--max-chars 200000]
        [--workdir DIR] [--out docs/benchmarks.md]

Each configuration (no regularizer, then each regularizer plugin with its default settings) trains
``experiment=chars`` on the first ``--max-chars`` characters of the Python standard library's
source, a text small enough for an LSTM of 256 units to overfit within the epoch budget (which is
where a regularizer earns its keep), for the same number of epochs, with early stopping on
validation loss and the best validated checkpoint tested. Every run is a subprocess
(``python -m rnnlab``) logging to one MLflow store; the table is read back from it: test bits per
character (mean ± the 95 % t interval over seeds, as rnnlab compare), the best epoch, seconds per epoch, and each
configuration's test bpc against none's on the same seed. With ``--out`` the table replaces the
section "Regularizers on the character model" of that file (appended when missing).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forecasting import fmt_pm  # a sibling script: mean ± 95 % interval over seeds

EXPERIMENT = "bench-regularizers"
SECTION = "## Regularizers on the character model"
CONFIGS = [  # (label, overrides)
    ("none", ["regularizer=[]"]),
    ("dropout (p 0.2, on the outputs)", ["regularizer=[dropout]"]),
    ("ar_tar (alpha 2, beta 1)", ["regularizer=[ar_tar]"]),
    ("variational_dropout (hidden 0.2, output 0.2)", ["regularizer=[variational_dropout]"]),
    ("weight_drop (p 0.2)", ["regularizer=[weight_drop]"]),
    ("zoneout (h 0.05, c 0.05)", ["regularizer=[zoneout]"]),
    ("embedding_dropout (p 0.1)", ["regularizer=[embedding_dropout]"]),
    ("input_noise (sigma 0.1)", ["regularizer=[input_noise]"]),
]


def run_name(index: int, seed: int) -> str:
    return f"reg{index}-s{seed}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--max-chars", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("bench-regularizers"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir}/mlflow.db"
    common = [
        "experiment=chars",
        f"data.max_chars={args.max_chars}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.max_time=null",
        "trainer.val_check_interval=1.0",
        "trainer.enable_progress_bar=false",
        "data.sample_chars=0",
        "logger.log_model=false",
        f"logger.tracking_uri={uri}",
        f"logger.experiment_name={EXPERIMENT}",
    ]
    start = time.perf_counter()
    for seed in range(1, args.seeds + 1):  # seed-major: a cut-short run still compares like with like
        for index, (label, overrides) in enumerate(CONFIGS):
            name = run_name(index, seed)
            log = workdir / "logs" / f"{name}.log"
            cmd = [sys.executable, "-m", "rnnlab", *common, *overrides, f"seed={seed}", f"logger.run_name={name}"]
            t0 = time.perf_counter()
            with log.open("w") as f:
                rc = subprocess.run(cmd, cwd=workdir, stdout=f, stderr=subprocess.STDOUT).returncode
            state = "ok" if rc == 0 else f"FAILED (exit {rc}; see {log})"
            print(f"{label}, seed {seed}: {time.perf_counter() - t0:.0f} s, {state}", flush=True)
    table = report(uri, args, common, (time.perf_counter() - start) / 60)
    print(table)
    if args.out is not None:
        write_section(args.out, table)


def report(uri: str, args: argparse.Namespace, common: list[str], minutes: float) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = {}
    if exp is not None:
        for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'"):
            runs[r.info.run_name] = r
    seeds = range(1, args.seeds + 1)
    none = {s: runs[run_name(0, s)].data.metrics.get("test/bpc") for s in seeds if run_name(0, s) in runs}
    lines = [
        SECTION,
        "",
        f"`python scripts/bench_regularizers.py --seeds {args.seeds} --epochs {args.epochs} "
        f"--max-chars {args.max_chars}` ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}; {minutes:.0f} min in all). Each run: "
        f"`python -m rnnlab {' '.join(c for c in common if 'tracking_uri' not in c)} regularizer=[...] seed=S`: "
        "an LSTM of 256 units on the first "
        f"{args.max_chars:,} characters of the Python standard library's source (5 % validation, 5 % test), "
        f"at most {args.epochs} epochs with early stopping on validation loss; the best validated "
        "checkpoint is tested. Each regularizer at its plugin's defaults. *vs none*: its test bpc over "
        "none's on the same seed (below 1: it helps), the median over seeds.",
        "",
        "| regularizer | test bpc (mean ± 95 % interval) | vs none | best epoch | s / epoch | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for index, (label, _) in enumerate(CONFIGS):
        found = [runs[run_name(index, s)] for s in seeds if run_name(index, s) in runs]
        bpc = [r.data.metrics["test/bpc"] for r in found if "test/bpc" in r.data.metrics]
        ratios = [
            r.data.metrics["test/bpc"] / none[s]
            for s, r in zip(seeds, found, strict=False)
            if none.get(s) and "test/bpc" in r.data.metrics
        ]
        epochs = [_best_epoch(client, r) for r in found]
        per_epoch = [
            r.data.metrics["train_seconds"] / max(1, r.data.metrics.get("epochs", 1))
            for r in found
            if "train_seconds" in r.data.metrics
        ]
        lines.append(
            f"| {label} | {fmt_pm(bpc)} | {statistics.median(ratios):.3f}x | "
            f"{'/'.join(str(e) for e in epochs)} | {statistics.median(per_epoch) if per_epoch else float('nan'):.1f} | "
            f"{len(bpc)} |"
            if ratios
            else f"| {label} | {fmt_pm(bpc)} | n/a | - | - | {len(bpc)} |"
        )
    return "\n".join(lines) + "\n"


def _best_epoch(client: object, run: object) -> int:
    """The epoch of the lowest validation loss (the checkpoint that was tested); one validation an
    epoch, logged at the global step."""
    from rnnlab.tracking import metric_history

    history = metric_history(client, run.info.run_id, "val/loss")  # type: ignore[attr-defined]
    return 1 + min(range(len(history)), key=lambda i: history[i].value) if history else 0


def write_section(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else ""
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        after = rest.find("\n## ")  # the next section, kept
        text = head + table + (rest[after:] if after >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + table
    path.write_text(text)


if __name__ == "__main__":
    main()
