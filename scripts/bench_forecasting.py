"""Forecasting benchmark: rnnlab's default model against every baseline on real series.

    python scripts/bench_forecasting.py [--seeds 3] [--series electricity,airpassengers] [--jobs 2]
        [--workdir /tmp/rnnlab-bench-forecasting] [--out docs/forecasting.md]
        [--extra model.linear_skip=true trainer.max_epochs=50]

Each series is forecast by ``python -m rnnlab`` with rnnlab's defaults (no ``experiment=``), once per
seed, as a subprocess; every run logs the model's test scores and each applicable baseline's on the
same test windows to MLflow (``test/rmse``, ``baseline/<name>/test/rmse``, ...), in a SQLite store in
the work dir. The numbers are read back from those runs (not from the runs' output) and written to
``--out`` as Markdown: per series the model's RMSE and MASE (mean and sd over the seeds) beside each
baseline's, and whether the model beats the best classical baseline and the linear autoregression.

The series come from packages rnnlab already installs (pmdarima, statsmodels, vega_datasets): no
network. Two are rnnlab's own data modules (``data=electricity``, ``data=temperature``); the others
are exported to CSV files in the work dir and read with ``data=csv``.

Window rule (one rule, not tuned per series): the data module's default window for the built-in
modules (electricity 96, temperature 48); for a CSV series rnnlab's default of 48 when it has at
least 500 points, otherwise two seasons (12 steps without a season), so that a short series still
leaves about 100 training windows.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

EXPERIMENT = "bench-forecasting"
BASELINES = ("persistence", "seasonal_naive", "drift", "linear_ar")
CLASSICAL = ("persistence", "seasonal_naive", "drift")  # the naive methods; linear_ar is reported apart
DEFAULT_WINDOW = 48  # SeriesConfig.window
SHORT = 500  # points: below this a CSV series gets a window of two seasons
WITHIN = 0.05  # "within 5 % of linear AR"


# ----------------------------------------------------------------------------- the series


def _sunspots() -> pd.DataFrame:
    from pmdarima.datasets import load_sunspots

    s = load_sunspots(as_series=True)
    return pd.DataFrame({"month": s.index.astype(str), "y": s.to_numpy(dtype=float)})


def _airpassengers() -> pd.DataFrame:
    from pmdarima.datasets import load_airpassengers

    y = load_airpassengers(as_series=True).to_numpy(dtype=float)
    return pd.DataFrame({"month": pd.period_range("1949-01", periods=len(y), freq="M").astype(str), "y": y})


def _wineind() -> pd.DataFrame:
    from pmdarima.datasets import load_wineind

    s = load_wineind(as_series=True)
    return pd.DataFrame({"month": s.index.astype(str), "y": s.to_numpy(dtype=float)})


def _msft() -> pd.DataFrame:
    from pmdarima.datasets import load_msft

    frame = load_msft().sort_values("Date")
    return pd.DataFrame({"date": frame["Date"].astype(str), "y": frame["Close"].to_numpy(dtype=float)})


def _co2() -> pd.DataFrame:
    from statsmodels.datasets import co2

    s = co2.load_pandas().data["co2"]
    # 59 of the 2,284 weeks are missing: filled by linear interpolation in time
    s = s.interpolate(method="time").bfill()
    return pd.DataFrame({"week": s.index.strftime("%Y-%m-%d"), "y": s.to_numpy(dtype=float)})


def _seattle() -> pd.DataFrame:
    from vega_datasets import local_data

    frame = local_data.seattle_weather().sort_values("date")
    return pd.DataFrame({"date": frame["date"].dt.strftime("%Y-%m-%d"), "y": frame["temp_max"].to_numpy(dtype=float)})


@dataclass(frozen=True)
class Series:
    name: str
    frequency: str
    source: str
    season: int | None  # None: the data module's default
    data: str | None = None  # a built-in data module (data=<name>)
    export: Callable[[], pd.DataFrame] | None = None  # else a CSV series: a frame with a column "y"
    notes: str = ""


SERIES: dict[str, Series] = {
    s.name: s
    for s in (
        Series(
            "electricity",
            "half-hourly",
            "England and Wales demand, Jun-Aug 2000, MW (pmdarima `load_taylor`; `data=electricity`)",
            None,
            data="electricity",
            notes="strong daily and weekly season",
        ),
        Series(
            "temperature",
            "hourly",
            "San Francisco air temperature 2010, degF (vega_datasets `sf_temps`; `data=temperature`)",
            24,
            data="temperature",
            notes="strong daily season, very smooth (linear AR is 14x better than persistence)",
        ),
        Series(
            "msft",
            "daily (trading days)",
            "Microsoft daily close 1986-2017, USD (pmdarima `load_msft`)",
            0,
            export=_msft,
            notes="trend, growing scale",
        ),
        Series(
            "seattle_temp_max",
            "daily",
            "Seattle daily maximum temperature 2012-2015, degC (vega_datasets `seattle_weather`)",
            365,
            export=_seattle,
            notes="yearly season, noisy days",
        ),
        Series(
            "co2",
            "weekly",
            "Mauna Loa CO2 1958-2001, ppm (statsmodels `co2`; 59 missing weeks interpolated)",
            52,
            export=_co2,
            notes="trend and yearly season",
        ),
        Series(
            "sunspots",
            "monthly",
            "monthly sunspot numbers 1749-1983 (pmdarima `load_sunspots`)",
            0,
            export=_sunspots,
            notes="~11-year cycle of varying length: no fixed season",
        ),
        Series(
            "airpassengers",
            "monthly",
            "international airline passengers 1949-1960, thousands (pmdarima `load_airpassengers`)",
            12,
            export=_airpassengers,
            notes="trend and multiplicative yearly season",
        ),
        Series(
            "wineind",
            "monthly",
            "Australian wine sales 1980-1994, bottles (pmdarima `load_wineind`)",
            12,
            export=_wineind,
            notes="yearly season",
        ),
    )
}


def csv_window(points: int, season: int) -> int:
    """The window rule for a CSV series (see the module docstring)."""
    if points >= SHORT:
        return DEFAULT_WINDOW
    return 2 * season if season else 12


@dataclass
class Prepared:
    series: Series
    points: int
    overrides: list[str]


def prepare(series: Series, workdir: Path) -> Prepared:
    """The series' data overrides; a CSV series is written to ``workdir/data/<name>.csv`` first."""
    if series.export is None:
        from rnnlab.registry import data_modules

        dm = data_modules.create(series.data)
        points = len(dm.history())
        overrides = [f"data={series.data}"]
        if series.season is not None:
            overrides.append(f"data.season={series.season}")
        return Prepared(series, points, overrides)
    frame = series.export()
    path = workdir / "data" / f"{series.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    season = series.season or 0
    overrides = [
        "data=csv",
        f"data.path={path}",
        "data.target=y",
        f"data.season={season}",
        f"data.window={csv_window(len(frame), season)}",
    ]
    return Prepared(series, len(frame), overrides)


# ----------------------------------------------------------------------------- running


@dataclass
class Job:
    prepared: Prepared
    seed: int

    @property
    def run_name(self) -> str:
        return f"{self.prepared.series.name}-s{self.seed}"


@dataclass
class Outcome:
    job: Job
    wall_s: float
    returncode: int
    log: Path


def run_command(job: Job, uri: str, bench_id: str, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rnnlab",
        *job.prepared.overrides,
        f"seed={job.seed}",
        f"logger.tracking_uri={uri}",
        f"logger.experiment_name={EXPERIMENT}",
        "trainer.enable_progress_bar=false",
        f"logger.run_name={job.run_name}",
        f"+logger.tags.bench_id={bench_id}",
        *extra,
    ]


def run_all(jobs: list[Job], workdir: Path, uri: str, bench_id: str, extra: list[str], n_jobs: int) -> list[Outcome]:
    env = dict(os.environ)
    if n_jobs > 1:  # share the cores between the parallel runs instead of oversubscribing them
        threads = str(max(1, (os.cpu_count() or 1) // n_jobs))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, threads)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    done: list[Outcome] = []

    def one(job: Job) -> Outcome:
        log = logs / f"{job.run_name}.log"
        start = time.perf_counter()
        with log.open("w") as f:
            rc = subprocess.run(
                run_command(job, uri, bench_id, extra), cwd=workdir, env=env, stdout=f, stderr=subprocess.STDOUT
            ).returncode
        outcome = Outcome(job, time.perf_counter() - start, rc, log)
        with lock:
            done.append(outcome)
            state = "ok" if rc == 0 else f"FAILED (exit {rc}; see {log})"
            print(f"[{len(done)}/{len(jobs)}] {job.run_name}: {outcome.wall_s:.1f} s, {state}", flush=True)
            if rc != 0:
                print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:]), flush=True)
        return outcome

    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(one, jobs))


def read_runs(uri: str, bench_id: str) -> dict[str, Any]:
    """This benchmark's finished MLflow runs by run name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return {}
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.bench_id = '{bench_id}' and attributes.status = 'FINISHED'"
    )
    return {r.info.run_name: r for r in runs}


# ----------------------------------------------------------------------------- the report


def mean_sd(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"


def fmt_pm(values: list[float]) -> str:
    """Mean ± 95 % interval over seeds, as ``rnnlab compare`` prints it (one convention in docs/)."""
    from rnnlab.compare import over_seeds

    return over_seeds(values)


@dataclass
class Result:
    prepared: Prepared
    runs: list[Any]
    walls: list[float]
    failed: int

    def metric(self, key: str) -> list[float]:
        return [r.data.metrics[key] for r in self.runs if key in r.data.metrics]

    def param(self, key: str) -> str:
        values = {r.data.params.get(key, "?") for r in self.runs}
        return ", ".join(sorted(values)) if values else "?"

    def model(self, metric: str) -> float:
        return mean_sd(self.metric(f"test/{metric}"))[0]

    def baseline(self, name: str, metric: str) -> float:
        return mean_sd(self.metric(f"baseline/{name}/test/{metric}"))[0]

    def best(self, names: tuple[str, ...]) -> tuple[str | None, float]:
        scores = {n: self.baseline(n, "rmse") for n in names}
        scores = {n: v for n, v in scores.items() if np.isfinite(v)}
        if not scores:
            return None, float("nan")
        name = min(scores, key=scores.__getitem__)
        return name, scores[name]


def verdict(model: float, base: float) -> str:
    if not (np.isfinite(model) and np.isfinite(base)):
        return "n/a"
    return "win" if model < base else "tie" if model == base else "loss"


def report(results: list[Result], args: argparse.Namespace, argv: list[str], uri: str, wall_total: float) -> str:
    import torch

    lines = [
        "# Forecasting benchmark",
        "",
        "rnnlab's default model (no `experiment=`) against every baseline on real series, "
        f"{args.seeds} seed(s) each. Written by `scripts/bench_forecasting.py`; rerun it to refresh.",
        "",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, {platform.processor() or platform.machine()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
        + (f", CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", CPU only"),
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; total wall time {wall_total / 60:.1f} min"
        f" with {args.jobs} run(s) at a time",
        f"- command: `python scripts/bench_forecasting.py {shlex.join(argv)}`",
        "- each run: `python -m rnnlab <series overrides> seed=S "
        f"logger.tracking_uri={uri} logger.experiment_name={EXPERIMENT} trainer.enable_progress_bar=false "
        "logger.run_name=<series>-sS" + (f" {shlex.join(args.extra)}" if args.extra else "") + "`",
        "- numbers: read back from each run's MLflow metrics (`test/rmse`, `test/mase`, "
        "`baseline/<name>/test/rmse`, ...); test split = the last 15 % of each series, one step ahead; "
        "RMSE in the series' units; MASE scaled by the in-sample seasonal naive error at the series' season "
        "(lag 1 without a season); over seeds: mean ± the half-width of the 95 % Student t interval "
        "(n-1 degrees of freedom), as `rnnlab compare` reports it",
        f"- window rule: the data module's default for `data=electricity` and `data=temperature`; for a CSV "
        f"series {DEFAULT_WINDOW} (rnnlab's default) when it has at least {SHORT} points, else two seasons",
        "- *best classical*: the best of persistence, seasonal naive and drift; *ratio*: the model's RMSE over "
        f"the best baseline's (linear AR included); *within 5 %*: model RMSE <= {1 + WITHIN:.2f} x linear AR's",
        "",
    ]

    # summary table
    lines += [
        "## Summary",
        "",
        "| series | frequency | points | season | window | model RMSE | best baseline (RMSE) | ratio "
        "| vs best classical | vs linear AR | within 5 % of linear AR | wall s / run (median) | epochs (median) |",
        "|---|---|--:|--:|--:|--:|---|--:|---|---|---|--:|--:|",
    ]
    wins_classical = wins_ar = within = counted = 0
    worst: tuple[float, str] = (float("-inf"), "")
    for res in results:
        s = res.prepared.series
        model = res.model("rmse")
        best_name, best_rmse = res.best(BASELINES)
        _, classical = res.best(CLASSICAL)
        ar = res.baseline("linear_ar", "rmse")
        ratio = model / best_rmse if np.isfinite(model) and best_rmse > 0 else float("nan")
        ar_ratio = model / ar if np.isfinite(model) and ar > 0 else float("nan")
        if np.isfinite(model):
            counted += 1
            wins_classical += verdict(model, classical) == "win"
            wins_ar += verdict(model, ar) == "win"
            within += bool(ar_ratio <= 1 + WITHIN)
            if ar_ratio > worst[0]:
                worst = (ar_ratio, s.name)
        epochs = res.metric("epochs")
        lines.append(
            f"| {s.name} | {s.frequency} | {res.prepared.points:,} | {res.param('data.season')} "
            f"| {res.param('data.window')} | {fmt_pm(res.metric('test/rmse'))} "
            f"| {best_name or 'n/a'} ({fmt(best_rmse)}) | {fmt(ratio)} | {verdict(model, classical)} "
            f"| {verdict(model, ar)} ({fmt(ar_ratio)}x) | {'yes' if ar_ratio <= 1 + WITHIN else 'no'} "
            f"| {statistics.median(res.walls):.1f} | {statistics.median(epochs):.0f} |"
            if res.walls and epochs
            else f"| {s.name} | {s.frequency} | {res.prepared.points:,} | | | no finished run | | | | | | | |"
        )
    worst_text = f"its RMSE is at most {fmt(worst[0])}x linear AR's ({worst[1]})" if worst[1] else "no linear AR"
    lines += [
        "",
        f"**The model beats the best classical baseline on {wins_classical} of {counted} series and linear AR on "
        f"{wins_ar} of {counted} (within 5 % of it on {within} of {counted}); {worst_text}.**",
        "",
    ]

    # per series
    for res in results:
        s = res.prepared.series
        lines += [
            f"## {s.name}",
            "",
            f"{s.source}. {s.frequency.capitalize()}, {res.prepared.points:,} points, "
            f"season {res.param('data.season')}, window {res.param('data.window')}; {s.notes}. "
            f"{len(res.runs)} finished run(s)" + (f", {res.failed} failed." if res.failed else "."),
            "",
            f"Overrides: `{' '.join(res.prepared.overrides)}`",
            "",
            "| method | test RMSE | test MASE |",
            "|---|--:|--:|",
            f"| **model** | {fmt_pm(res.metric('test/rmse'))} | {fmt_pm(res.metric('test/mase'))} |",
        ]
        for name in BASELINES:
            rmse = res.metric(f"baseline/{name}/test/rmse")
            if rmse:
                lines.append(f"| {name} | {fmt_pm(rmse)} | {fmt_pm(res.metric(f'baseline/{name}/test/mase'))} |")
            else:
                lines.append(f"| {name} | {'does not apply' if res.runs else 'no run'} | |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="runs per series, seeds 0..N-1 (default 3)")
    parser.add_argument("--series", default=",".join(SERIES), help=f"comma-separated subset of {', '.join(SERIES)}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rnnlab-bench-forecasting"))
    parser.add_argument("--out", type=Path, default=Path("docs/forecasting.md"))
    parser.add_argument(
        "--extra", nargs="+", action="extend", default=[], metavar="OVERRIDE", help="passed to every run"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--list", action="store_true", help="list the series and exit")
    args = parser.parse_args(argv)
    if args.list:
        for s in SERIES.values():
            season = "default" if s.season is None else s.season
            print(f"{s.name:18s} {s.frequency:22s} season {season:>7}  {s.source}")
        return
    names = [n.strip() for n in args.series.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERIES]
    if unknown:
        parser.error(f"unknown series {', '.join(unknown)}; known: {', '.join(SERIES)}")
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")

    workdir = args.workdir.expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    bench_id = uuid.uuid4().hex[:12]
    print(f"work dir {workdir}; MLflow store {uri}, experiment {EXPERIMENT!r}, bench_id {bench_id}", flush=True)

    prepared = []
    for name in names:
        p = prepare(SERIES[name], workdir)
        print(f"{name}: {p.points:,} points; {' '.join(p.overrides)}", flush=True)
        prepared.append(p)
    jobs = [Job(p, seed) for p in prepared for seed in range(args.seeds)]
    print(f"{len(jobs)} runs, {args.jobs} at a time" + (f"; extra: {' '.join(args.extra)}" if args.extra else ""))

    start = time.perf_counter()
    outcomes = run_all(jobs, workdir, uri, bench_id, args.extra, args.jobs)
    total = time.perf_counter() - start

    runs = read_runs(uri, bench_id)
    if not runs:
        sys.exit(f"no run finished (see the logs in {workdir / 'logs'}); {args.out} is left as it was")
    results = []
    for p in prepared:
        mine = [o for o in outcomes if o.job.prepared is p]
        found = [runs[o.job.run_name] for o in mine if o.job.run_name in runs]
        walls = [o.wall_s for o in mine if o.job.run_name in runs]
        results.append(Result(p, found, walls, failed=len(mine) - len(found)))
    text = report(results, args, argv, uri, total)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"\nwrote {args.out} ({len(runs)} of {len(jobs)} runs read back from MLflow)")
    summary = next((line for line in text.splitlines() if line.startswith("**The model")), "")
    print(summary.strip("*"))
    if len(runs) < len(jobs):
        sys.exit(1)


if __name__ == "__main__":
    main()
