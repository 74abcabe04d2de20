"""Seeds as an axis (``seeds=N``) and ``rnnlab compare``: real runs through the CLI on a temporary
SQLite store, the comparison's numbers checked against the MLflow records and a hand computation."""

from __future__ import annotations

import csv
import io
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL, free_port, run_cli

from rnnlab.checks import expand_seeds
from rnnlab.errors import ConfigError

# A run in about a second: one epoch on a short sine series.
TINY = [*SMALL, "data.length=300", "trainer.max_epochs=1"]
# Student's t, 97.5 % quantile, 2 degrees of freedom (any t table): the 95 % interval of 3 seeds.
T_975_DOF2 = 4.302652729911275
# One thread a training process: these tests run beside others on two shared cores, where torch's
# threads mostly wait for each other.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def compare_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``rnnlab compare ARGS`` as a user runs it, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "rnnlab", "compare", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def compare(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """``compare(args, cwd)``: the same command line through ``rnnlab.cli.main`` in this process
    (a new process costs seconds of imports each on a loaded machine), as a CompletedProcess."""
    from rnnlab.cli import main

    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            main(["compare", *args])
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["rnnlab", "compare", *args], code, out, err)

    return run


def _client(store: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{store}")


# ----------------------------------------------------------------------------- seeds=N


def test_seeds_expand_into_a_seed_sweep_composed_with_the_grid() -> None:
    flags: dict[str, str | None] = {}
    assert expand_seeds(["backbone=rnn,lstm,gru", "seeds=5"], flags) == ["backbone=rnn,lstm,gru", "seed=0,1,2,3,4"]
    assert "-m" in flags  # seeds= implies a multirun
    flags = {"--multirun": None}
    assert expand_seeds(["seeds=[3,7]", "data=sine"], flags) == ["data=sine", "seed=3,7"]
    assert flags == {"--multirun": None}
    # with the Optuna sweeper, each trial runs once per seed: the sweeper's own setting
    assert expand_seeds(["sweep=gru_sine", "seeds=2"], {}) == ["sweep=gru_sine", "hydra.sweeper.seeds=[0,1]"]
    assert expand_seeds(["backbone=gru"], {}) == ["backbone=gru"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seeds=0"], "seeds: must be >= 1 (the number of seeds), got 0"),
        (["seeds=abc"], "seeds: must be a number of seeds (>= 1) or a list of seeds such as [0,3,7], got 'abc'"),
        (["seeds=[1,1]"], "seeds: seeds must be distinct and >= 0, got [1, 1]"),
        (["seeds=2", "seed=4"], "seeds: seeds= and seed= cannot both be given"),
        (["-m", "seeds=2,3"], "seeds: takes a number of seeds or a list ([0,3,7]), not a sweep"),
        (["--cfg", "job", "seeds=2"], "seeds: runs one job per seed (a multirun); --cfg and --info show one job"),
    ],
)
def test_bad_seeds_are_one_line_exit_2(
    args: list[str], message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnnlab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"rnnlab: error: {message}"), lines
    assert not (workdir / "mlflow.db").exists()


def test_seed_list_rejects_bools() -> None:
    from rnnlab.checks import seed_list

    with pytest.raises(ConfigError):
        seed_list(True)
    assert seed_list(3) == [0, 1, 2] and seed_list([5, 2]) == [5, 2]


# ----------------------------------------------------------------------------- real runs, compared


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real runs: ``-m backbone=rnn,gru seeds=3`` through the CLI, in a fresh directory."""
    cwd = tmp_path_factory.mktemp("compare")
    res = run_cli(["-m", "backbone=rnn,gru", "seeds=3", *TINY], cwd, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-3000:]
    return cwd


def _runs(cwd: Path) -> list:
    client = _client(cwd / "mlflow.db")
    exp = client.get_experiment_by_name("rnnlab")
    return list(client.search_runs([exp.experiment_id]))


@pytest.mark.slow  # the module's six training runs (about 30 s on two idle cores)
def test_seeds_make_one_run_each_grouped_by_configuration(store: Path) -> None:
    runs = _runs(store)
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    by_group: dict[str, list] = {}
    for r in runs:
        by_group.setdefault(r.data.tags["rnnlab.group"], []).append(r)
    assert len(by_group) == 2  # one tag per configuration, the same for its three seeds
    for members in by_group.values():
        assert sorted(r.data.params["seed"] for r in members) == ["0", "1", "2"]
        assert len({r.data.params["backbone.name"] for r in members}) == 1


def _by_backbone(cwd: Path, metric: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in _runs(cwd):
        out.setdefault(r.data.params["backbone.name"], []).append(r.data.metrics[metric])
    return out


@pytest.mark.slow  # the module's six training runs (about 30 s on two idle cores)
def test_compare_csv_matches_the_records_and_a_hand_computed_interval(store: Path) -> None:
    res = compare_cli(["--metric", "test/rmse", "--metric", "test/mae", "--format", "csv"], store)
    assert res.returncode == 0, res.stderr
    rows = {row["backbone.name"]: row for row in csv.DictReader(io.StringIO(res.stdout))}
    assert set(rows) == {"rnn", "gru"}
    for metric in ("test/rmse", "test/mae"):
        for backbone, values in _by_backbone(store, metric).items():
            row = rows[backbone]
            assert int(row[f"{metric} n"]) == 3 and row["n"] == "3" and row["seeds"] == "0 1 2"
            assert float(row[f"{metric} mean"]) == pytest.approx(sum(values) / 3, rel=1e-12)
            half = T_975_DOF2 * statistics.stdev(values) / math.sqrt(3)
            assert float(row[f"{metric} ci95"]) == pytest.approx(half, rel=1e-9)
    best = {r.data.params["backbone.name"]: r.data.metrics["baseline/test/rmse"] for r in _runs(store)}
    for backbone, row in rows.items():
        assert float(row["test/rmse best baseline"]) == pytest.approx(best[backbone], rel=1e-12)


def _welch(a: list[float], b: list[float]) -> tuple[float, float]:
    from scipy import stats

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return statistics.mean(a) - statistics.mean(b), stats.t.ppf(0.975, dof) * math.sqrt(va + vb)


@pytest.mark.slow  # the module's six training runs (about 30 s on two idle cores)
def test_compare_markdown_shows_intervals_baselines_and_a_verdict(store: Path, compare) -> None:
    res = compare([], store)  # the default metric of a forecast: test/rmse
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("| configuration | n | seeds | test/rmse (mean ± 95 %) | best baseline test/rmse |")
    values = _by_backbone(store, "test/rmse")
    order = [line.split("|")[1].strip() for line in out.splitlines()[2:4]]
    assert sorted(order) == ["gru", "rnn"]
    diff, half = _welch(values[order[0]], values[order[1]])
    verdict = next(line for line in out.splitlines() if " vs " in line)
    assert verdict.startswith(f"{order[0]} vs {order[1]} on test/rmse: difference ")
    shown_diff, _, rest = verdict.split("difference ")[1].partition(" ± ")
    shown_half = rest.split(",")[0]
    # printed to the decimals that give the half-width two significant digits
    last = 10.0 ** -len(shown_half.partition(".")[2])
    assert float(shown_half) == pytest.approx(half, abs=0.51 * last)
    assert float(shown_diff) == pytest.approx(diff, abs=0.51 * last)
    significant = abs(diff) > half
    assert ("not significant at n=3" in verdict) != significant
    assert "(Welch t, 95 %)" in verdict
    # the best baseline, named
    assert any(name in out for name in ("linear_ar", "persistence", "seasonal_naive", "drift"))
    # --format table: the same numbers in an aligned terminal table
    table = compare(["--format", "table"], store)
    assert table.returncode == 0 and verdict in table.stdout


@pytest.mark.slow  # the module's six training runs (about 30 s on two idle cores)
def test_compare_selects_by_filter_group_and_says_when_one_run_has_no_interval(store: Path, compare) -> None:
    res = compare(["--filter", "params.seed = '1'"], store)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("(n=1, no interval)") == 2
    assert "no interval at n=1 (a group has one run)" in res.stdout
    group = next(r.data.tags["rnnlab.group"] for r in _runs(store) if r.data.params["backbone.name"] == "gru")
    res = compare(["--group", group, "--format", "csv"], store)
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 1 and rows[0]["n"] == "3" and " vs " not in res.stdout
    res = compare(["--filter", "params.`backbone.name` = 'rnn'", "--format", "csv"], store)
    assert [row["n"] for row in csv.DictReader(io.StringIO(res.stdout))] == ["3"]
    res = compare(["--tag", "rnnlab.backbone=gru", "--format", "csv"], store)
    assert [(row["configuration"], row["n"]) for row in csv.DictReader(io.StringIO(res.stdout))] == [("group 1", "3")]
    (multirun,) = {p.parent for p in store.glob("multirun/*/*/0")}  # the multirun's directory
    res = compare(["--sweep", str(multirun), "--format", "csv"], store)
    assert sorted(row["n"] for row in csv.DictReader(io.StringIO(res.stdout))) == ["3", "3"]


@pytest.mark.slow  # the module's six training runs (about 30 s on two idle cores)
def test_compare_draws_the_learning_curves(store: Path, compare) -> None:
    res = compare(["--curves", "curves/seeds.png", "--curve-metric", "train/loss_epoch"], store)
    assert res.returncode == 0, res.stderr
    png = store / "curves" / "seeds.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow  # the module's six training runs (about 30 s on two idle cores)
def test_compare_counts_unfinished_runs_only_with_all(store: Path, tmp_path: Path, compare) -> None:
    import shutil

    db = tmp_path / "copy.db"  # the module's store stays as it is for the other tests
    shutil.copy(store / "mlflow.db", db)
    client = _client(db)
    exp = client.get_experiment_by_name("rnnlab")
    gru = [r for r in client.search_runs([exp.experiment_id]) if r.data.params["backbone.name"] == "gru"]
    client.set_terminated(gru[0].info.run_id, "KILLED")  # as a run stopped by SIGTERM is left
    uri = ["--tracking-uri", f"sqlite:///{db}", "--format", "csv"]

    def counts(*extra: str) -> dict[str, str]:
        res = compare([*uri, *extra], tmp_path)
        assert res.returncode == 0, res.stderr
        return {row["backbone.name"]: row["n"] for row in csv.DictReader(io.StringIO(res.stdout))}

    assert counts() == {"rnn": "3", "gru": "2"}
    assert counts("--all") == {"rnn": "3", "gru": "3"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "nope"], "--experiment: no experiment 'nope'; valid choices: Default, rnnlab"),
        (["--filter", "params.`backbone.name` = 'lstm'"], "no runs matched; widen the selection"),
        (["--metric", "test/rsme"], "--metric: the selected runs did not log 'test/rsme'; valid choices: "),
        (["--filter", "params.seed = = 1"], "--filter: MLflow cannot search with 'params.seed = = 1'"),
        (["--tracking-uri", "sqlite:///missing.db"], "--tracking-uri: no MLflow store at "),
        (["--tracking-uri", "http://127.0.0.1:{port}"], "--tracking-uri: cannot reach the MLflow server"),
        (["--tag", "novalue"], "--tag: expected KEY=VALUE, got 'novalue'"),
        (["--sweep", "0123abcd"], "--sweep: '0123abcd' is neither a sweep's parent run id nor a multirun directory"),
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["--curves", "c.png", "--curve-metric", "val/nope"], "--curve-metric: no selected run logged a history"),
    ],
)
def test_compare_bad_input_is_one_line_exit_2(store: Path, args: list[str], message: str, compare) -> None:
    args = [a.replace("{port}", str(free_port())) for a in args]
    res = compare(args, store)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stdout + res.stderr
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: compare: ") and message in lines[0], lines
    assert not (store / "missing.db").exists()


# ----------------------------------------------------------------------------- the Optuna sweeper, budgets


@pytest.mark.slow
def test_sweeper_seeds_score_a_trial_by_its_mean_and_compare_notes_budgets(workdir: Path, compare) -> None:
    import optuna

    res = run_cli(
        [
            "-m",
            "sweep=fair",
            "backbone=gru",
            "seeds=2",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.plots=false",
            "hydra.sweeper.pruner.name=median",  # off: a trial has a curve per seed
            *TINY,
        ],
        workdir,
        env=ONE_THREAD,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "hydra.sweeper.seeds=[0, 1]: trials are not pruned (one curve per seed)" in res.stdout + res.stderr
    res = run_cli(["-m", "backbone=rnn", "seeds=2", *TINY], workdir, env=ONE_THREAD)  # the same seeds, no tuning
    assert res.returncode == 0, res.stderr[-3000:]
    runs = _runs(workdir)
    children = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert len(children) == 4  # 2 trials x 2 seeds
    study = optuna.load_study(study_name="fair-gru-sine", storage=f"sqlite:///{workdir / 'optuna.db'}")
    for trial in study.trials:
        mine = [r for r in children if r.data.tags["optuna.trial_number"] == str(trial.number)]
        assert sorted(r.data.params["seed"] for r in mine) == ["0", "1"]
        assert trial.value == pytest.approx(statistics.mean(r.data.metrics["best/val/loss"] for r in mine), rel=1e-9)
        assert trial.user_attrs["seeds"] == [0, 1]
        by_seed = {r.data.params["seed"]: r.data.metrics["best/val/loss"] for r in mine}
        assert trial.user_attrs["values_per_seed"] == pytest.approx([by_seed["0"], by_seed["1"]], rel=1e-12)
    parent = next(r for r in runs if r.data.tags.get("rnnlab.sweep") == "true")
    assert parent.data.params["n_trials"] == "2" and parent.data.params["seeds"] == "0,1"
    res = compare(["--best", "--format", "table"], workdir)
    assert res.returncode == 0, res.stderr
    assert "tuning budgets differ: " in res.stdout
    assert "sweep of 2 trials x 2 seeds" in res.stdout and "no sweep" in res.stdout
    # --best: of the sweep, only its best trial (on val/loss), over its seeds
    res = compare(["--best", "--format", "csv"], workdir)
    rows = {row["backbone.name"]: row for row in csv.DictReader(io.StringIO(res.stdout))}
    assert set(rows) == {"gru", "rnn"} and rows["gru"]["n"] == "2" and rows["rnn"]["n"] == "2"
    best = min(study.trials, key=lambda t: t.value)
    mine = [r.data.metrics["test/rmse"] for r in children if r.data.tags["optuna.trial_number"] == str(best.number)]
    assert float(rows["gru"]["test/rmse mean"]) == pytest.approx(statistics.mean(mine), rel=1e-12)


def test_over_seeds_is_the_one_convention_of_the_docs_tables() -> None:
    """Mean ± the 95 % t interval's half-width, to two significant digits of it (bench_forecasting
    and bench_regularizers print their tables through it)."""
    from rnnlab.compare import over_seeds

    half = T_975_DOF2 * 1.0 / math.sqrt(3)  # values 1, 2, 3: sd 1
    assert over_seeds([1.0, 2.0, 3.0]) == f"2.0 ± {half:.1f}" == "2.0 ± 2.5"
    assert over_seeds([5.0]) == "5.000 (n=1, no interval)"
    assert over_seeds([float("nan")]) == "n/a"
    assert over_seeds([166.5, 166.7, 166.9, float("nan")]).startswith("166.70 ± ")  # non-finite left out
