"""The Optuna sweeper on a toy Hydra app (tests/sweeper_app): real SQLite/journal/PostgreSQL storages,
real subprocesses, a real MLflow SQLite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import postgres_url
from hydra_plugins.rnnlab_optuna_sweeper import _liveness as liveness
from hydra_plugins.rnnlab_optuna_sweeper import _samplers as samplers
from hydra_plugins.rnnlab_optuna_sweeper import _search_space as search_space
from hydra_plugins.rnnlab_optuna_sweeper._objectives import Objectives
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from rnnlab.errors import ConfigError
from rnnlab.pruning import PRUNER_ATTR, PRUNERS, TrialReporter, create_pruner, open_storage

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "sweeper_app" / "app.py"
# Hydra finds plugins by walking the ``hydra_plugins`` namespace; setuptools' default editable install
# hides it from that walk, so the plugin's source dir goes on PYTHONPATH (harmless for a wheel install).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
FAST = ["hydra.sweep.dir=multirun/s", "hydra.sweeper.study_name=s", "hydra.sweeper.plots=false"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def app(cwd: Path, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(APP), "-m", "hydra/sweeper=optuna", *args],
        cwd=cwd,
        env=ENV,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def spawn(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), "-m", "hydra/sweeper=optuna", *args],
        cwd=cwd,
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def load(cwd: Path, name: str = "s", storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage or f"sqlite:///{cwd / 'optuna.db'}")


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# ----------------------------------------------------------------------------- plugin discovery


def test_plugin_discovered_and_cheap_to_import() -> None:
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "from hydra.core.config_store import ConfigStore\n"
        "names = [p.__module__ + '.' + p.__name__ for p in Plugins.instance().discover(Sweeper)]\n"
        "assert 'hydra_plugins.rnnlab_optuna_sweeper.optuna_sweeper.OptunaSweeper' in names, names\n"
        "assert 'optuna.yaml' in ConfigStore.instance().list('hydra/sweeper')\n"
        "import rnnlab.pruning\n"
        "heavy = [m for m in ('optuna', 'mlflow', 'torch', 'pytorch_lightning') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], env=ENV, check=True, timeout=60)


# ----------------------------------------------------------------------------- search space


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("choice(a, b, c)", CategoricalDistribution(["a", "b", "c"])),
        ("1,2,4", CategoricalDistribution([1, 2, 4])),
        ("choice(true, false)", CategoricalDistribution([True, False])),
        ("range(1, 5)", IntDistribution(1, 5)),  # stop included, as in hydra-optuna-sweeper
        ("range(8, 128, 8)", IntDistribution(8, 128, step=8)),
        ("range(0.0, 1.0, 0.25)", FloatDistribution(0.0, 1.0, step=0.25)),
        ("shuffle(range(1, 4))", CategoricalDistribution([1, 2, 3])),
        ("interval(0.1, 0.5)", FloatDistribution(0.1, 0.5)),
        ("interval(1, 10)", FloatDistribution(1.0, 10.0)),  # Hydra: interval() is always float
        ("int(interval(1.0, 10.0))", IntDistribution(1, 10)),
        ("tag(log, interval(1e-4, 1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
        ("tag(log, int(interval(8, 256)))", IntDistribution(8, 256, log=True)),
    ],
)
def test_search_space_forms(expr: str, expected: object) -> None:
    dists, fixed = search_space.parse_search_space({"k": expr}, [])
    got = dists["k"]
    if isinstance(expected, CategoricalDistribution) and expr.startswith("shuffle"):
        assert sorted(got.choices) == sorted(expected.choices)
    else:
        assert got == expected
    assert fixed == []


def test_fixed_values_and_command_line_precedence() -> None:
    dists, fixed = search_space.parse_search_space(
        {"a": "interval(0, 1)", "b": 3, "c": "choice(x, y)"}, ["a=tag(log, interval(0.01, 1.0))", "d=hello", "e=1,2"]
    )
    assert dists == {
        "a": FloatDistribution(0.01, 1.0, log=True),
        "c": CategoricalDistribution(["x", "y"]),
        "e": CategoricalDistribution([1, 2]),
    }
    assert fixed == ["b=3", "d=hello"]


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("interval(1.0, 0.1)", "hydra.sweeper.params.k: bad search space"),
        ("tag(log, interval(0.0, 1.0))", "hydra.sweeper.params.k: bad search space"),
        ("tag(lin, interval(0.0, 1.0))", "unknown tag 'lin'; valid choices: log"),
        ("range(5, 1)", "hydra.sweeper.params.k: empty range"),
        ("interval(1)", "hydra.sweeper.params.k: cannot parse"),
        ("intervall(0, 1)", "hydra.sweeper.params.k: cannot parse"),
        ("choice(", "hydra.sweeper.params.k: cannot parse"),
    ],
)
def test_bad_expressions_are_one_line_errors(expr: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        search_space.parse_search_space({"k": expr}, [])
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_command_line_expression() -> None:
    with pytest.raises(ConfigError, match=r"^lr: bad search space"):
        search_space.parse_search_space({}, ["lr=tag(log, interval(-1.0, 1.0))"])


# ----------------------------------------------------------------------------- samplers, pruners, objectives

SPACE = {"x": FloatDistribution(-1, 1), "n": IntDistribution(1, 4), "c": CategoricalDistribution(["a", "b"])}
GRID = {"n": IntDistribution(1, 4), "c": CategoricalDistribution(["a", "b"])}


@pytest.mark.parametrize(
    ("name", "cls", "space"),
    [
        ("tpe", optuna.samplers.TPESampler, SPACE),
        ("random", optuna.samplers.RandomSampler, SPACE),
        ("cmaes", optuna.samplers.CmaEsSampler, SPACE),
        ("grid", optuna.samplers.GridSampler, GRID),
        ("nsgaii", optuna.samplers.NSGAIISampler, SPACE),
    ],
)
def test_each_sampler_samples_the_space(name: str, cls: type, space: dict) -> None:
    sampler, grid_size = samplers.create_sampler({"name": name, "seed": 3}, space)
    assert isinstance(sampler, cls)
    assert grid_size == (6 if name == "grid" else None)  # a grid stops below high, as hydra-optuna-sweeper's
    study = optuna.create_study(sampler=sampler)
    for _ in range(4):
        trial = study.ask(fixed_distributions=space)
        assert set(trial.params) == set(space)
        study.tell(trial, sum(v for v in trial.params.values() if isinstance(v, (int, float))))
    # the seed makes the first sample reproducible
    again = optuna.create_study(sampler=samplers.create_sampler({"name": name, "seed": 3}, space)[0])
    assert again.ask(fixed_distributions=space).params == study.trials[0].params


def test_sampler_errors() -> None:
    with pytest.raises(ConfigError) as e:
        samplers.create_sampler({"name": "tpee"}, SPACE)
    assert (
        str(e.value)
        == "hydra.sweeper.sampler: unknown sampler 'tpee'; valid choices: cmaes, grid, motpe, nsgaii, random, tpe"
    )
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.sampler.population_size: not an argument of sampler 'tpe'"):
        samplers.create_sampler({"name": "tpe", "population_size": 4}, SPACE)
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.params.x: the grid sampler needs choice\(\) or range\(\)"):
        samplers.create_sampler({"name": "grid"}, SPACE)


@pytest.mark.parametrize(
    ("name", "args", "cls"),
    [
        ("none", {}, optuna.pruners.NopPruner),
        ("median", {"n_startup_trials": 1, "n_warmup_steps": 1}, optuna.pruners.MedianPruner),
        ("percentile", {"percentile": 25.0, "n_startup_trials": 1}, optuna.pruners.PercentilePruner),
        ("successive_halving", {"min_resource": 1, "reduction_factor": 2}, optuna.pruners.SuccessiveHalvingPruner),
        ("hyperband", {"min_resource": 1, "max_resource": 8, "reduction_factor": 2}, optuna.pruners.HyperbandPruner),
    ],
)
def test_each_pruner_prunes_through_the_storage(tmp_path: Path, name: str, args: dict, cls: type) -> None:
    """Trials report through TrialReporter (a job's code path) to a SQLite storage; a bad curve is
    stopped by every pruner but ``none``."""
    assert isinstance(create_pruner(name, **args), cls)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="p", storage=url)
    stopped = []
    for i in range(8):
        trial = study.ask()
        study._storage.set_trial_system_attr(trial._trial_id, PRUNER_ATTR, {"name": name, **args})
        reporter = TrialReporter("p", url, trial.number)
        offset = 0.0 if i < 2 else 10.0  # later trials are much worse at every step
        pruned_at = None
        for step in range(8):
            if reporter.report(offset + 1.0 / (step + 1), step):
                pruned_at = step
                break
        if pruned_at is None:
            study.tell(trial, offset)
        else:
            study.tell(trial, state=TrialState.PRUNED)
            stopped.append(pruned_at)
    assert (len(stopped) > 0) == (name != "none")
    assert all(s < 7 for s in stopped)


def test_pruner_errors() -> None:
    with pytest.raises(ConfigError) as e:
        create_pruner("medain")
    assert str(e.value) == (
        "hydra.sweeper.pruner: unknown pruner 'medain'; valid choices: " + ", ".join(sorted(PRUNERS))
    )
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.pruner.percentile: not an argument of pruner 'median'"):
        samplers.pruner_spec({"name": "median", "percentile": 10.0})
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.pruner: bad arguments for pruner 'percentile'"):
        samplers.pruner_spec({"name": "percentile", "percentile": 150.0})


def test_objectives_and_directions() -> None:
    from omegaconf import OmegaConf

    task = OmegaConf.create({"monitor": "val/acc", "monitor_mode": "max"})
    assert Objectives.from_config(None, None, task) == Objectives(["val/acc"], ["maximize"])
    both = Objectives.from_config(["a", "b"], ["minimize", "maximize"], task)
    assert both == Objectives(["a", "b"], ["minimize", "maximize"])
    with pytest.raises(ConfigError, match=r"^hydra\.sweeper\.direction: 1 direction"):
        Objectives.from_config(["a", "b"], "minimize", task)
    with pytest.raises(ConfigError, match="unknown direction 'min'; valid choices: maximize, minimize"):
        Objectives.from_config("a", "min", task)


# ----------------------------------------------------------------------------- end to end on the toy app


def test_sweep_prunes_logs_mlflow_and_writes_best(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    proc = app(tmp_path, "sweep=toy", "log_child=true", "hydra.sweeper.study_name=s")
    study = load(tmp_path)
    counts = states(study)
    assert sum(counts.values()) == 8 and counts.get("COMPLETE", 0) >= 1 and counts.get("PRUNED", 0) >= 1, counts
    for t in study.trials:  # the pruned ones stopped early
        if t.state == TrialState.PRUNED:
            assert len(t.intermediate_values) < 6
    lines = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if "] trial " in ln]
    assert len(lines) == 8 and all(" best=" in ln and "value=" in ln for ln in lines), lines

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    parents = [r for r in runs if r.data.tags.get("rnnlab.sweep") == "true"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 8
    assert {r.data.tags["optuna.trial_state"] for r in children} == {"COMPLETE", "PRUNED"}
    assert parent.data.metrics["best/val/loss"] == pytest.approx(study.best_value)
    assert parent.data.tags["best.trial_number"] == str(study.best_trial.number)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best.yaml", "optimization_results.yaml", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots and "plots/parallel_coordinate.png" in plots

    # best.yaml re-runs the best trial as a single run
    sweep_dir = tmp_path / "multirun" / "toy"
    best = (sweep_dir / "best.yaml").read_text()
    assert f"x: {study.best_params['x']}" in best
    single = subprocess.run(
        [sys.executable, str(APP), "--config-dir", str(sweep_dir), "--config-name", "best", "--cfg", "job"],
        cwd=tmp_path,
        env=ENV,
        text=True,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert f"x: {study.best_params['x']}" in single.stdout and "number: null" in single.stdout


def test_resume_after_sigkill(tmp_path: Path) -> None:
    args = [
        *FAST,
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.sampler.seed=1",
        "x=interval(-1.0, 1.0)",
        "epochs=4",
        "sleep=0.25",
    ]
    proc = spawn(tmp_path, *args)
    deadline = time.time() + 90
    done: list = []
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            trials = load(tmp_path).get_trials()
        except Exception:
            continue
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING and len(t.intermediate_values) >= 1]
        if len(done) >= 2 and running:
            break
    killed = running[0].number
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.params, t.value) for t in done}

    app(tmp_path, *args)
    study = load(tmp_path)
    trials = study.get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state == TrialState.FAIL
    assert "is gone" in by_number[killed].system_attrs[liveness.STALE_ATTR]
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5  # n_trials reached, killed slot re-run
    for number, (params, value) in before.items():  # nothing finished was lost or re-run
        assert by_number[number].params == params and by_number[number].value == value
    assert len(trials) == 6 and sorted(by_number) == list(range(6))
    job_dirs = sorted(int(p.name) for p in (tmp_path / "multirun" / "s").iterdir() if p.name.isdigit())
    assert job_dirs == list(range(6))  # job numbers continue, nothing overwritten


def _check_exact(study: optuna.Study, n: int) -> None:
    trials = study.get_trials()
    assert len(trials) == n, states(study)
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state == TrialState.COMPLETE for t in trials), states(study)


def test_parallel_workers_count_exactly(tmp_path: Path) -> None:
    """Two commands at once on one storage, one of them with n_workers=2: three workers, 9 trials."""
    args = [*FAST, "hydra.sweeper.n_trials=9", "x=interval(-1.0, 1.0)", "epochs=3", "sleep=0.1"]
    a = spawn(tmp_path, *args, "hydra.sweeper.n_workers=2")
    b = spawn(tmp_path, *args)
    outs = [p.communicate(timeout=120)[0] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    study = load(tmp_path)
    _check_exact(study, 9)
    assert len({t.system_attrs[liveness.PID_ATTR] for t in study.trials}) == 3


def test_postgres_two_workers(tmp_path: Path) -> None:
    url = postgres_url()
    name = f"pg-{os.getpid()}-{time.time_ns()}"
    args = [
        *FAST,
        f"hydra.sweeper.storage='{url}'",
        f"hydra.sweeper.study_name={name}",
        "hydra.sweeper.n_trials=8",
        "x=interval(-1.0, 1.0)",
        "epochs=3",
        "sleep=0.1",
    ]
    procs = [spawn(tmp_path, *args), spawn(tmp_path, *args)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    _check_exact(study, 8)
    assert len({t.system_attrs[liveness.PID_ATTR] for t in study.trials}) == 2
    optuna.delete_study(study_name=name, storage=storage)


def test_journal_storage(tmp_path: Path) -> None:
    app(
        tmp_path,
        *FAST,
        "hydra.sweeper.storage=journal:///j/optuna.log",
        "hydra.sweeper.n_trials=3",
        "x=choice(0.1, 0.3, 0.5)",
        "hydra.sweeper.sampler.name=grid",
    )
    study = optuna.load_study(study_name="s", storage=open_storage(f"journal:///{tmp_path}/j/optuna.log"))
    _check_exact(study, 3)
    assert sorted(t.params["x"] for t in study.trials) == [0.1, 0.3, 0.5]


def test_failures_are_logged_and_the_sweep_goes_on_until_the_rate(tmp_path: Path) -> None:
    args = [
        *FAST,
        "hydra.sweeper.n_trials=6",
        "x=choice(-0.5, 0.5)",
        "fail_above=0.0",
        "hydra.sweeper.sampler.name=grid",
        "y=choice(0.0, 0.1, 0.2)",
    ]
    proc = app(tmp_path, *args, "hydra.sweeper.max_failure_rate=0.5")
    study = load(tmp_path)
    counts = states(study)
    assert counts == {"COMPLETE": 3, "FAIL": 3}, counts
    for t in study.trials:
        if t.state == TrialState.FAIL:
            assert t.system_attrs[liveness.ERROR_ATTR].startswith("ValueError: x=0.5 is above fail_above")
    assert "error: ValueError: x=0.5" in proc.stderr + proc.stdout

    # a new study with max_failure_rate 0: the first failure stops the sweep with one line
    proc = app(tmp_path, *args, "hydra.sweeper.study_name=s2", "hydra.sweeper.max_failure_rate=0.0", check=False)
    assert proc.returncode != 0
    assert "hydra.sweeper.max_failure_rate: 1 of 6 trials failed" in proc.stderr
    assert sum(t.state == TrialState.FAIL for t in load(tmp_path, "s2").trials) == 1


def test_bad_config_fails_before_any_trial(tmp_path: Path) -> None:
    proc = app(tmp_path, *FAST, "+hydra.sweeper.params.x='interval(1.0, 0.0)'", check=False)
    assert proc.returncode != 0
    assert "hydra.sweeper.params.x: bad search space 'x=interval(1.0, 0.0)'" in proc.stderr
    proc = app(tmp_path, *FAST, "y=tag(log, interval(-1.0, 1.0))", check=False)
    assert "y: bad search space" in proc.stderr
    proc = app(tmp_path, *FAST, "hydra.sweeper.sampler.name=tpee", "x=interval(0.0, 1.0)", check=False)
    assert (
        "hydra.sweeper.sampler: unknown sampler 'tpee'; valid choices: cmaes, grid, motpe, nsgaii, random, tpe"
        in proc.stderr
    )
    proc = app(
        tmp_path,
        *FAST,
        "hydra.sweeper.pruner.name=median",
        "hydra.sweeper.direction=minimize",
        "monitor_mode=max",
        "x=interval(0.0, 1.0)",
        check=False,
    )
    assert "hydra.sweeper.direction: 'minimize' disagrees with monitor_mode 'max'" in proc.stderr
    assert not (tmp_path / "optuna.db").exists()  # no study, no trial


# ----------------------------------------------------------------------------- the Lightning callback


def test_pruning_callback_stops_lightning_training(tmp_path: Path) -> None:
    import pytorch_lightning as pl
    import torch
    from omegaconf import OmegaConf

    from rnnlab.pruning import PruningCallback

    url = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="cb", storage=url)
    good = study.ask()  # a finished trial with a much better curve
    for step in range(5):
        good.report(0.0, step)
    study.tell(good, 0.0)
    trial = study.ask()
    study._storage.set_trial_system_attr(
        trial._trial_id, PRUNER_ATTR, {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1}
    )

    class Model(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):  # type: ignore[no-untyped-def]
            return self.lin(batch[0]).pow(2).mean() + 100.0

        def validation_step(self, batch, _):  # type: ignore[no-untyped-def]
            self.log("val/loss", self.lin(batch[0]).pow(2).mean() + 100.0)

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    trial_cfg = OmegaConf.create({"study_name": "cb", "storage": url, "number": trial.number})
    trainer = pl.Trainer(
        max_epochs=5,
        callbacks=[PruningCallback(trial=trial_cfg, monitor="val/loss")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=2,
        default_root_dir=tmp_path,
    )
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 1"):
        trainer.fit(Model(), data, data)
    frozen = study._storage.get_trial(trial._trial_id)
    assert sorted(frozen.intermediate_values) == [0, 1]  # sanity check not reported; stopped at warmup end
