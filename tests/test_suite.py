"""scripts/suite.py: the task suite runner and its report (docs/suite.md, .png, .json).

The end-to-end test runs the real script on two tiny sine tasks (a task file stands in for the
presets), one backbone, real ``python -m rnnlab`` subprocesses into a temporary MLflow store, and
checks the report against the MLflow records, the skip of finished runs and the replacement of one
task's rows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_suite() -> Any:
    spec = importlib.util.spec_from_file_location("rnnlab_suite_script", ROOT / "scripts" / "suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


suite = _load_suite()

TINY = ["data=sine", "data.length=200", "data.window=8", "backbone.hidden_size=4", "trainer.max_epochs=2"]
TASK_FILE = [
    {
        "name": "sine_a",
        "overrides": TINY,
        "metric": "rmse",
        "baseline": "linear_ar",
        "budget": 0.5,
        "published": "none",
        "source": "test",
        "about": "a tiny sine",
        "targets": [{"text": "rnn RMSE below 10", "backbones": ["rnn"], "op": "<", "bound": 10.0}],
    },
    {
        "name": "sine_b",
        "overrides": [*TINY, "data.period=20"],
        "metric": "mae",
        "baseline": "persistence",
        "budget": 0.5,
        "published": "none",
        "source": "test",
        "targets": [{"text": "rnn below persistence", "backbones": ["rnn"], "op": "<", "need": "any"}],
    },
    {
        "name": "broken",
        "overrides": ["data=nope"],
        "metric": "rmse",
        "baseline": "linear_ar",
        "budget": 0.5,
        "published": "none",
        "source": "test",
    },
]


def _sections(md: str) -> dict[str, str]:
    """``## <task>`` sections of the report by task name."""
    parts = md.split("\n## ")[1:]
    return {p.split("\n", 1)[0]: p for p in parts}


def _row(section: str, backbone: str) -> list[str]:
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == backbone:
            return cells
    raise AssertionError(f"no {backbone} row in:\n{section}")


def _runs(store: Path) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name(suite.EXPERIMENT)
    return list(client.search_runs([exp.experiment_id])) if exp else []


def _latest(runs: list[Any], task: str) -> Any:
    mine = [r for r in runs if r.data.tags.get("suite_task") == task]
    return max(mine, key=lambda r: r.info.start_time)


def test_the_tasks_fit_the_hour_and_name_what_they_compare_with(capsys: pytest.CaptureFixture[str]) -> None:
    tasks = list(suite.TASKS.values())
    assert {t.name for t in tasks} >= {"adding_t100", "copy_t50", "seq_digits", "chars", "ucr_gunpoint"}
    assert suite.suite_minutes(tasks, len(suite.BACKBONES)) <= suite.LIMIT_MIN
    for t in tasks:
        assert t.published and t.source and t.targets, t.name
        assert t.overrides[0].split("=")[0] in ("experiment", "data"), t.name
    assert suite.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "adding_t100       8 min  test/mse" in out and "planned: " in out


def test_targets_are_met_not_met_or_unknown() -> None:
    below = suite.Target("lstm and gru < 0.01", ("lstm", "gru"), "<", 0.01)
    either = suite.Target("lstm or gru below the baseline", ("lstm", "gru"), "<", None, "any")
    rows = {
        "lstm": {"status": "FINISHED", "value": 0.004, "baseline": 0.3},
        "gru": {"status": "FINISHED", "value": 0.02, "baseline": 0.3},
    }
    assert suite.check(below, rows) == ("not met", "lstm 0.004 < 0.01; gru 0.02 not < 0.01")
    assert suite.check(either, rows)[0] == "met"
    rows["gru"]["value"] = 0.009
    assert suite.check(below, rows)[0] == "met"
    del rows["gru"]
    assert suite.check(below, rows) == ("n/a", "lstm 0.004 < 0.01; no finished gru run")
    rows["lstm"]["status"] = "FAILED"
    assert suite.check(either, rows)[0] == "n/a"


def test_dry_run_prints_each_run_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs" / "suite.md"
    store = tmp_path / "store"
    assert (
        suite.main(["--dry-run", "--store", str(store), "--out", str(out), "--tasks", "adding_t100,electricity"]) == 0
    )
    text = capsys.readouterr().out
    assert "python -m rnnlab experiment=adding_t100 backbone=lstm seed=0 trainer.max_time=8 " in text
    assert "python -m rnnlab data=electricity backbone=gru seed=0 trainer.max_time=1 " in text
    assert not store.exists() and not out.parent.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "adding,chars"], "unknown task adding; valid: adding_t100"),
        (["--backbones", "lstm,lstn"], "unknown backbone lstn; valid: gru, ln_lstm, lstm, rnn"),
        (["--scale", "0"], "--scale must be > 0"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        suite.main([*args, "--dry-run"])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_task_file_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([{**TASK_FILE[0], "name": "has space"}]))
    with pytest.raises(SystemExit):
        suite.main(["--task-file", str(path), "--dry-run"])
    assert "task name 'has space'" in capsys.readouterr().err


@pytest.mark.slow  # 30 s of real runs: CI runs it, the default selection does not
def test_suite_reports_mlflow_numbers_skips_finished_runs_and_replaces_one_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two cores, shared
    task_file = tmp_path / "tasks.json"
    task_file.write_text(json.dumps(TASK_FILE))
    store, out = tmp_path / "store", tmp_path / "docs" / "suite.md"
    args = ["--task-file", str(task_file), "--backbones", "rnn", "--store", str(store), "--out", str(out)]

    # 1. every task: two runs finish, the broken one fails before it starts, and the suite goes on
    assert suite.main(args) == 1
    printed = capsys.readouterr().out
    assert "broken rnn (run): " in printed and "FAILED (exit 2" in printed and "unknown data 'nope'" in printed
    runs = _runs(store)
    assert sorted(r.data.tags["suite_task"] for r in runs) == ["sine_a", "sine_b"]
    assert all(r.info.status == "FINISHED" for r in runs)
    first_b = _latest(runs, "sine_b").info.run_id
    md = out.read_text()
    sections = _sections(md)
    for task, metric, baseline in (("sine_a", "rmse", "linear_ar"), ("sine_b", "mae", "persistence")):
        run = _latest(runs, task)
        m = run.data.metrics
        cells = _row(sections[task], "rnn")
        assert cells[1] == suite.fmt(m[f"test/{metric}"])
        assert cells[2] == suite.fmt(m[f"baseline/{baseline}/test/{metric}"])
        assert cells[3] == f"{run.data.tags['rnnlab.baseline.best']} {suite.fmt(m[f'baseline/test/{metric}'])}"
        assert cells[4] == suite.fmt(m["epochs"]) == "2"
        assert cells[-1] == f"`{run.info.run_id[:8]}`"
        assert f"| [{task}](#{task}) | {metric} (lower is better) | {cells[1]} |" in md  # the summary
    assert "rnn RMSE below 10: **met** (rnn " in sections["sine_a"]
    assert _row(sections["broken"], "rnn")[1] == "not started"
    assert "unknown data 'nope'" in sections["broken"]
    assert "- machine: " in sections["sine_a"] and f"--task-file {task_file}" in sections["sine_a"]
    record = json.loads(out.with_suffix(".json").read_text())
    curve = record["tasks"]["sine_a"]["rows"]["rnn"]["curve"]
    assert [x for x, _ in curve] == [1.0, 2.0]
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # 2. again: the finished runs are skipped (no new run), the report is the same
    assert suite.main(args) == 1
    assert re.search(r"^sine_a +rnn +0.5 min +skip [0-9a-f]{32}$", capsys.readouterr().out, re.M)
    assert len(_runs(store)) == 2
    assert _sections(out.read_text())["sine_a"] == sections["sine_a"]

    # 3. one task anew: its row is the new run's, the other tasks' sections are kept as they were
    assert suite.main([*args, "--tasks", "sine_b", "--fresh"]) == 0
    runs = _runs(store)
    assert len(runs) == 3
    new = _latest(runs, "sine_b")
    assert new.info.run_id != first_b
    after = _sections(out.read_text())
    assert _row(after["sine_b"], "rnn")[-1] == f"`{new.info.run_id[:8]}`"
    assert _row(after["sine_b"], "rnn")[1] == suite.fmt(new.data.metrics["test/mae"])
    assert after["sine_a"] == sections["sine_a"] and after["broken"] == sections["broken"]
    assert "--tasks sine_b --fresh" in after["sine_b"] and "--fresh" not in after["sine_a"]


@pytest.mark.slow
def test_a_stopped_suite_goes_on_from_the_last_epoch(tmp_path: Path) -> None:
    task_file = tmp_path / "tasks.json"
    long = {
        **TASK_FILE[0],
        "overrides": ["data=sine", "data.length=3000", "trainer.max_epochs=12", "trainer.early_stopping.enabled=false"],
        "targets": [],
    }
    task_file.write_text(json.dumps([long]))
    store = tmp_path / "store"
    cmd = [sys.executable, str(ROOT / "scripts" / "suite.py"), "--task-file", str(task_file), "--backbones", "gru"]
    cmd += ["--store", str(store), "--out", str(tmp_path / "suite.md")]
    # the run's line per epoch tells when to stop it; CI=true would silence those lines
    env = {**{k: v for k, v in os.environ.items() if k != "CI"}, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = store / "logs" / "sine_a-gru-s0.log"
    deadline = time.monotonic() + 240
    while not (log.exists() and "epoch 3/12" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == 143, output
    (stopped,) = _runs(store)
    assert stopped.info.status == "KILLED"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resume {stopped.info.run_id}" in done.stdout
    (run,) = _runs(store)
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert run.data.metrics["epochs"] == 12
    record = json.loads((tmp_path / "suite.json").read_text())
    row = record["tasks"]["sine_a"]["rows"]["gru"]
    assert row["processes"] == 2 and [x for x, _ in row["curve"]] == [float(e) for e in range(1, 13)]
