"""Pruning vs no pruning: the same search space, sampler seed and trial budget, on a real task.

    python scripts/bench_sweep.py                 # LSTM on SF hourly temperature, 20 trials x 16 epochs
    python scripts/bench_sweep.py --sampler tpe --trials 24 --epochs 12 --pruner median

With ``--sampler random`` (the default) both arms try exactly the same configurations, so the
difference between them is the pruner's alone: the epochs it saved, and whether it let the best
configuration finish. With ``--sampler tpe`` the pruned arm's history also steers what it samples
next, so the two arms explore different configurations and the comparison mixes both effects.

Runs ``python -m rnnlab -m`` twice in fresh directories (own optuna.db / mlflow.db each) and prints,
for both, the epochs trained (summed over trials, from the intermediate values every job reports),
wall time and best value of the objective. Not imported by the package.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRUNERS = {
    # the most aggressive of the usual settings: stop a trial once it is worse than the best quarter
    "percentile": [
        "hydra.sweeper.pruner.name=percentile",
        "hydra.sweeper.pruner.percentile=25.0",
        "hydra.sweeper.pruner.n_startup_trials=3",
        "hydra.sweeper.pruner.n_warmup_steps=1",
    ],
    "median": [
        "hydra.sweeper.pruner.name=median",
        "hydra.sweeper.pruner.n_startup_trials=4",
        "hydra.sweeper.pruner.n_warmup_steps=1",
    ],
    "hyperband": [
        "hydra.sweeper.pruner.name=hyperband",
        "hydra.sweeper.pruner.min_resource=1",
        "hydra.sweeper.pruner.reduction_factor=3",
    ],
    "successive_halving": [
        "hydra.sweeper.pruner.name=successive_halving",
        "hydra.sweeper.pruner.min_resource=1",
        "hydra.sweeper.pruner.reduction_factor=3",
    ],
}


def run(workdir: Path, name: str, args: argparse.Namespace, pruner: list[str]) -> dict[str, float]:
    import optuna

    cmd = [
        sys.executable,
        "-m",
        "rnnlab",
        "-m",
        "hydra/sweeper=optuna",
        f"backbone={args.backbone}",
        f"data={args.data}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.early_stopping.enabled=false",
        "logger.log_model=false",
        "logger.log_checkpoint=false",
        f"hydra.sweep.dir=multirun/{name}",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.sampler.name={args.sampler}",
        f"hydra.sweeper.sampler.seed={args.seed}",
        *(["hydra.sweeper.sampler.n_startup_trials=4"] if args.sampler == "tpe" else []),
        "hydra.sweeper.plots=false",
        "optimizer.lr=tag(log, interval(1e-4, 3e-2))",
        "backbone.hidden_size=choice(16, 32, 64)",
        "data.window=choice(24, 48)",
        *pruner,
    ]
    # one thread per process: identical for both arms, and no oversubscription on a shared CPU
    env = {"OMP_NUM_THREADS": "1", **os.environ}
    if (ROOT / "plugins" / "hydra_plugins").is_dir():  # a source checkout: let Hydra's plugin scan find it
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "plugins"), env.get("PYTHONPATH", "")])
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"[{name}] failed:\n{proc.stderr[-4000:]}")
    for line in proc.stderr.splitlines() + proc.stdout.splitlines():
        if "] trial " in line:
            print(f"[{name}] {line.split('] ', 1)[1]}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'optuna.db'}")
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
        "wall": wall,
        "best": study.best_value,
        "complete": states.get("COMPLETE", 0),
        "pruned": states.get("PRUNED", 0),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--sampler", choices=["random", "tpe"], default="random")
    p.add_argument("--replays", type=int, default=50, help="trial orders to replay the pruner in (0: none)")
    p.add_argument("--replay-only", type=Path, default=None, help="replay on a finished run's --workdir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pruner", choices=sorted(PRUNERS), default="percentile")
    p.add_argument("--backbone", default="lstm")
    p.add_argument("--data", default="temperature")
    p.add_argument("--workdir", type=Path, default=None, help="keep the stores here (default: a temp dir)")
    args = p.parse_args()

    if args.replay_only:
        replay(args.replay_only / "no_pruning", args)
        return
    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    results = {}
    for name, pruner in (("no_pruning", ["hydra.sweeper.pruner.name=none"]), ("pruning", PRUNERS[args.pruner])):
        workdir = base / name
        workdir.mkdir(parents=True, exist_ok=True)
        results[name] = run(workdir, name, args, pruner)

    budget = args.trials * args.epochs
    print(
        f"\n{args.backbone} on {args.data}: {args.trials} trials x up to {args.epochs} epochs, "
        f"{args.sampler} sampler seed {args.seed}, pruner {args.pruner}; stores in {base}"
    )
    print(f"{'':12} {'epochs':>8} {'of budget':>10} {'wall s':>8} {'best val/loss':>14} {'complete':>9} {'pruned':>7}")
    for name, r in results.items():
        print(
            f"{name:12} {r['epochs']:>8} {r['epochs'] / budget:>9.0%} {r['wall']:>8.1f} {r['best']:>14.5f} "
            f"{r['complete']:>9} {r['pruned']:>7}"
        )
    a, b = results["no_pruning"], results["pruning"]
    gap = (b["best"] - a["best"]) / abs(a["best"])
    share = b["epochs"] / a["epochs"]
    ok = gap <= 0.05 and share <= 0.40
    print(
        f"pruning: best within {gap:+.1%} of no pruning, {share:.0%} of its epochs, "
        f"{b['wall'] / a['wall']:.0%} of its wall time -> target (<= +5 %, <= 40 % epochs) "
        f"{'met' if ok else 'NOT met'}"
    )
    if args.replays:
        replay(base / "no_pruning", args)


def replay(workdir: Path, args: argparse.Namespace) -> None:
    """How much of the result is the trial order's luck: the unpruned arm recorded every trial's full
    learning curve, so the same pruner (Optuna's, with the same arguments) is replayed on those curves
    in ``--replays`` random orders, each judged against the same target."""
    import random
    import statistics

    import optuna

    from rnnlab.pruning import create_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="no_pruning", storage=f"sqlite:///{workdir / 'optuna.db'}")
    curves = [[t.intermediate_values[k] for k in sorted(t.intermediate_values)] for t in study.trials]
    best = min(min(c) for c in curves)
    budget = sum(len(c) for c in curves)
    spec = dict(arg.split("hydra.sweeper.pruner.", 1)[1].split("=", 1) for arg in PRUNERS[args.pruner])
    name = spec.pop("name")
    kwargs = {k: (float(v) if "." in v else int(v)) for k, v in spec.items()}
    shares, gaps = [], []
    for seed in range(args.replays):
        replayed = optuna.create_study(pruner=create_pruner(name, **kwargs))
        epochs, finished = 0, []
        for curve in random.Random(seed).sample(curves, len(curves)):
            trial = replayed.ask()
            for step, value in enumerate(curve):
                trial.report(value, step)
                epochs += 1
                if trial.should_prune():
                    replayed.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                replayed.tell(trial, min(curve))
                finished.append(min(curve))
        shares.append(epochs / budget)
        gaps.append(min(finished) / best - 1)
    hits = sum(s <= 0.40 and g <= 0.05 for s, g in zip(shares, gaps, strict=True))
    print(
        f"replayed on the unpruned curves in {args.replays} random trial orders: epochs median "
        f"{statistics.median(shares):.0%} (range {min(shares):.0%}-{max(shares):.0%}), best gap median "
        f"{statistics.median(gaps):+.1%} (worst {max(gaps):+.1%}); target met in {hits}/{args.replays}"
    )


if __name__ == "__main__":
    main()
