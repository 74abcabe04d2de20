"""CLI start-up and default-experiment timings, side by side with their baselines.

    python scripts/bench_foundation.py [--repeats 7] [--default-runs 3]

Start-up: median wall time of each command over --repeats runs, and its ratio to a bare
``python -c pass`` and to ``import pytorch_lightning`` (what --help would cost if it imported the
training stack). Default experiment: median wall time of ``python -m rnnlab`` over --default-runs
runs in a fresh directory each, with its test RMSE next to the persistence baseline's.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time


def wall(cmd: list[str], cwd: str | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, res.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--default-runs", type=int, default=3)
    args = parser.parse_args()
    py = sys.executable
    commands = {
        "python -c pass": [py, "-c", "pass"],
        "python -m rnnlab --help": [py, "-m", "rnnlab", "--help"],
        "python -m rnnlab --cfg job": [py, "-m", "rnnlab", "--cfg", "job"],
        "python -m rnnlab plugins": [py, "-m", "rnnlab", "plugins"],
        "python -c 'import pytorch_lightning'": [py, "-c", "import pytorch_lightning"],
    }
    medians = {}
    for name, cmd in commands.items():
        wall(cmd)  # warm the file cache
        medians[name] = statistics.median(wall(cmd)[0] for _ in range(args.repeats))
    base, pl = medians["python -c pass"], medians["python -c 'import pytorch_lightning'"]
    print(f"start-up, median of {args.repeats} runs")
    print(f"{'command':<40}{'seconds':>9}{'x bare python':>15}{'x import PL':>13}")
    for name, t in medians.items():
        print(f"{name:<40}{t:>9.3f}{t / base:>15.1f}{t / pl:>13.2f}")

    if args.default_runs:
        times, rmse, base_rmse, epochs = [], [], [], []
        for _ in range(args.default_runs):
            with tempfile.TemporaryDirectory() as tmp:
                t, out = wall([py, "-m", "rnnlab"], cwd=tmp)
            times.append(t)
            m = re.search(r"test/rmse \S+\s+([\d.]+)\s+([\d.]+)", out)
            e = re.search(r", (\d+) epochs,", out)
            assert m and e, out
            rmse.append(float(m.group(1)))
            base_rmse.append(float(m.group(2)))
            epochs.append(int(e.group(1)))
        print(f"\ndefault experiment (python -m rnnlab), {args.default_runs} runs")
        print(f"wall seconds: median {statistics.median(times):.1f} (runs: {', '.join(f'{t:.1f}' for t in times)})")
        print(f"epochs (early stopping): {epochs}")
        print(
            f"test RMSE: model {statistics.median(rmse):.4f} vs persistence {statistics.median(base_rmse):.4f} "
            f"(ratio {statistics.median(rmse) / statistics.median(base_rmse):.3f})"
        )


if __name__ == "__main__":
    main()
