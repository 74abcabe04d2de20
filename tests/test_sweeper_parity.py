"""Parity with hydra-optuna-sweeper 1.2 (the plugin of Hydra 1.2/1.3, on Optuna 2.10): its documented
and tested forms give the same search space, sampler and pruner here.

The expected values are written out from its source (``hydra_plugins/hydra_optuna_sweeper/_impl.py``,
``config.py``), tests (``tests/test_optuna_sweeper_plugin.py``, ``tests/conf/*.yaml``), examples and
docs (``website/docs/plugins/optuna_sweeper.md``), with Optuna 2's distributions translated to
Optuna 4's: ``IntUniformDistribution(l, h, step)`` -> ``IntDistribution(l, h, step=step)``,
``IntLogUniformDistribution`` -> ``IntDistribution(log=True)``, ``UniformDistribution`` ->
``FloatDistribution``, ``LogUniformDistribution`` -> ``FloatDistribution(log=True)``,
``DiscreteUniformDistribution(l, h, q)`` -> ``FloatDistribution(l, h, step=q)``.
The plugin itself is not imported: it pins ``optuna<3``.
"""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra_plugins.rnnlab_optuna_sweeper import _samplers as samplers
from hydra_plugins.rnnlab_optuna_sweeper import _search_space as search_space
from hydra_plugins.rnnlab_optuna_sweeper import config as sweeper_config
from hydra_plugins.rnnlab_optuna_sweeper._objectives import Objectives
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from rnnlab.errors import ConfigError
from rnnlab.pruning import pruner_from_spec

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "sweeper_app" / "app.py"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def load(cwd: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'optuna.db'}")


def dists(*lines: str) -> tuple[dict[str, Any], list[str]]:
    return search_space.parse_search_space({}, list(lines))


# ----------------------------------------------------------------------------- search space


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # test_create_optuna_distribution_from_override
        ("key=choice(1,2)", CategoricalDistribution([1, 2])),
        ("key=choice(true, false)", CategoricalDistribution([True, False])),
        ("key=choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
        ("key=shuffle(range(1,3))", CategoricalDistribution([1, 2])),  # Hydra's range: stop excluded
        ("key=range(1,3)", IntDistribution(1, 3)),  # IntUniformDistribution(1, 3): stop included
        ("key=interval(1, 5)", FloatDistribution(1, 5)),
        ("key=int(interval(1, 5))", IntDistribution(1, 5)),
        ("key=tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
        ("key=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
        ("key=range(0.5, 5.5, step=1)", FloatDistribution(0.5, 5.5, step=1)),
        # example/conf/config.yaml and the docs' sphere example
        ("x=range(-5.5, 5.5, step=0.5)", FloatDistribution(-5.5, 5.5, step=0.5)),
        ("x=range(-5.5,5.5,step=0.5)", FloatDistribution(-5.5, 5.5, step=0.5)),
        ("y=choice(-5 ,0 ,5)", CategoricalDistribution([-5, 0, 5])),
        ("x=range(-5.5, 5.5, 0.5)", FloatDistribution(-5.5, 5.5, step=0.5)),  # custom-search-space example
        # docs: interval, range and choice overrides
        ("x=interval(-5.0, 5.0)", FloatDistribution(-5.0, 5.0)),
        ("y=interval(0, 10)", FloatDistribution(0, 10)),
        ("x=int(interval(-5.0, 5.0))", IntDistribution(-5, 5)),
        ("y=tag(log, interval(1, 10))", FloatDistribution(1, 10, log=True)),
        ("x=range(-5.0, 5.0)", FloatDistribution(-5.0, 5.0, step=1.0)),
        ("y=shuffle(range(-5, 5))", CategoricalDistribution(list(range(-5, 5)))),
        ("x=choice(-5.0, 0.0, 5.0)", CategoricalDistribution([-5.0, 0.0, 5.0])),
        ("x=range(1,4)", IntDistribution(1, 4)),
        # multi-objective example and test
        ("x=range(0, 5, step=0.5)", FloatDistribution(0, 5, step=0.5)),
        ("y=range(0, 3, step=0.5)", FloatDistribution(0, 3, step=0.5)),
        ("x=range(0, 5)", IntDistribution(0, 5)),
        # tests/conf/test_grid.yaml
        ("y=range(-1.0, 1.0, step=1)", FloatDistribution(-1.0, 1.0, step=1)),
    ],
)
def test_override_forms(line: str, expected: Any) -> None:
    (got,) = dists(line)[0].values()
    if "shuffle" in line:  # shuffle() randomizes the order of the choices, as there
        assert isinstance(got, CategoricalDistribution) and set(got.choices) == set(expected.choices)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("lines", "expected", "fixed"),
    [  # test_create_params_from_overrides (fixed values there: {"key2": "5"})
        (["key=choice(1,2)"], {"key": CategoricalDistribution([1, 2])}, []),
        (["key=5"], {}, ["key=5"]),
        (["key1=choice(1,2)", "key2=5"], {"key1": CategoricalDistribution([1, 2])}, ["key2=5"]),
        (
            ["key1=choice(1,2)", "key2=5", "key3=range(1,3)"],
            {"key1": CategoricalDistribution([1, 2]), "key3": IntDistribution(1, 3)},
            ["key2=5"],
        ),
        (["x=choice(0, 1, 2)", "y=0", "~z"], {"x": CategoricalDistribution([0, 1, 2])}, ["y=0", "~z"]),
    ],
)
def test_params_and_fixed_values(lines: list[str], expected: dict[str, Any], fixed: list[str]) -> None:
    assert dists(*lines) == (expected, fixed)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [  # test_create_optuna_distribution_from_config, tests/conf/test_deprecated_search_space.yaml
        ({"type": "categorical", "choices": [1, 2, 3]}, CategoricalDistribution([1, 2, 3])),
        ({"type": "int", "low": 0, "high": 10}, IntDistribution(0, 10)),
        ({"type": "int", "low": 0, "high": 10, "step": 2}, IntDistribution(0, 10, step=2)),
        ({"type": "int", "low": 0, "high": 5}, IntDistribution(0, 5)),
        ({"type": "int", "low": 1, "high": 100, "log": True}, IntDistribution(1, 100, log=True)),
        ({"type": "float", "low": 0, "high": 1}, FloatDistribution(0, 1)),
        ({"type": "float", "low": 0, "high": 10, "step": 2}, FloatDistribution(0, 10, step=2)),
        ({"type": "float", "low": 1, "high": 100, "log": True}, FloatDistribution(1, 100, log=True)),
        ({"type": "float", "low": -5.5, "high": 5.5, "step": 0.5}, FloatDistribution(-5.5, 5.5, step=0.5)),
    ],
)
def test_deprecated_search_space_entries(entry: dict[str, Any], expected: Any) -> None:
    assert search_space.parse_search_space({}, [], {"x": entry}) == ({"x": expected}, [])


def test_params_win_over_search_space(caplog: pytest.LogCaptureFixture) -> None:
    old = {"x": {"type": "float", "low": 0, "high": 1}}
    with caplog.at_level(logging.WARNING):
        assert search_space.parse_search_space({"y": "choice(1, 2)"}, [], old)[0] == {
            "y": CategoricalDistribution([1, 2])
        }
        assert "both params and search_space are set; using params" in caplog.text
        caplog.clear()
        search_space.parse_search_space({}, [], old)
        assert "search_space is deprecated" in caplog.text


def test_differences_in_reading_params() -> None:
    """Where reading differs: the command line replaces a ``params`` key even with a sweep (there a
    fixed value anywhere won), and values are written as Hydra reads them (there ``str()``: None)."""
    assert search_space.parse_search_space({"b": 3}, ["b=choice(1, 2)"]) == ({"b": CategoricalDistribution([1, 2])}, [])
    assert [search_space.format_value(v) for v in (None, True, 0.1, 3, "a")] == ["null", "true", "0.1", "3", "a"]


def test_presets_keep_their_values() -> None:
    """conf/sweep presets were rewritten for range's included stop: same values as before."""
    for path in sorted((ROOT / "conf" / "sweep").glob("*.yaml")):
        params = OmegaConf.load(path).hydra.sweeper.params
        for key, dist in search_space.parse_search_space(OmegaConf.to_container(params), [])[0].items():
            if key == "backbone.num_layers":
                assert dist == IntDistribution(1, 2), path.name


# ----------------------------------------------------------------------------- samplers

# config.py of hydra-optuna-sweeper 1.2: each hydra/sweeper/sampler option, as composed.
ORIGINAL_SAMPLERS: dict[str, dict[str, Any]] = {
    "tpe": {
        "_target_": "optuna.samplers.TPESampler",
        "seed": None,
        "consider_prior": True,
        "prior_weight": 1.0,
        "consider_magic_clip": True,
        "consider_endpoints": False,
        "n_startup_trials": 10,
        "n_ei_candidates": 24,
        "multivariate": False,
        "warn_independent_sampling": True,
    },
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    "cmaes": {
        "_target_": "optuna.samplers.CmaEsSampler",
        "seed": None,
        "x0": None,
        "sigma0": None,
        "independent_sampler": None,
        "warn_independent_sampling": True,
        "consider_pruned_trials": False,
        "restart_strategy": None,
        "inc_popsize": 2,
        "use_separable_cma": False,
        "source_trials": None,
    },
    "nsgaii": {
        "_target_": "optuna.samplers.NSGAIISampler",
        "seed": None,
        "population_size": 50,
        "mutation_prob": None,
        "crossover_prob": 0.9,
        "swapping_prob": 0.5,
        "constraints_func": None,
    },
    "motpe": {
        "_target_": "optuna.samplers.MOTPESampler",
        "seed": None,
        "consider_prior": True,
        "prior_weight": 1.0,
        "consider_magic_clip": True,
        "consider_endpoints": False,
        "n_startup_trials": 10,
        "n_ehvi_candidates": 24,
    },
    "grid": {"_target_": "optuna.samplers.GridSampler", "_partial_": True},
}
SPACE = {"x": FloatDistribution(-5.5, 5.5, step=0.5), "y": CategoricalDistribution([-5, 0, 5])}


def compose_sweeper(*overrides: str) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(APP.parent / "conf"), version_base="1.3"):
        cfg = compose("config", ["hydra/sweeper=optuna", *overrides], return_hydra_config=True)
    out = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert isinstance(out, dict)
    return out


def first_params(sampler: optuna.samplers.BaseSampler, n: int = 12) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask(fixed_distributions=SPACE)
        study.tell(trial, trial.params["x"] ** 2 + trial.params["y"] ** 2)
        out.append(trial.params)
    return out


def reference(option: str, **changes: Any) -> optuna.samplers.BaseSampler:
    """The sampler as hydra-optuna-sweeper's ``instantiate`` built it from the option."""
    args = {k: v for k, v in ORIGINAL_SAMPLERS[option].items() if not k.startswith("_")} | changes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(optuna.samplers, ORIGINAL_SAMPLERS[option]["_target_"].rsplit(".", 1)[1])(**args)


@pytest.mark.parametrize("option", sorted(ORIGINAL_SAMPLERS))
def test_sampler_group_options(option: str) -> None:
    node = compose_sweeper(f"hydra/sweeper/sampler={option}", "hydra.sweeper.sampler.seed=123")
    sampler_node = node["sampler"]
    expected = {**ORIGINAL_SAMPLERS[option], "seed": 123}
    assert {k: sampler_node[k] for k in expected if k in sampler_node} == expected
    # the rest are rnnlab's short-form keys, unset
    assert all(v in (None, {}) for k, v in sampler_node.items() if k not in expected)
    space = {"x": SPACE["x"], "y": SPACE["y"]}
    sampler, grid = samplers.create_sampler(sampler_node, space)
    if option == "grid":
        assert isinstance(sampler, optuna.samplers.GridSampler) and grid == 22 * 3
    elif option == "motpe":  # removed in Optuna 4: TPESampler with the same arguments
        assert type(sampler) is optuna.samplers.TPESampler
        assert sampler._n_ei_candidates == 24 and sampler._n_startup_trials == 10
    else:
        assert first_params(sampler) == first_params(reference(option, seed=123))


@pytest.mark.parametrize(
    "sampler_conf",
    [
        {"seed": 123},  # the custom-search-space example: the default tpe option's arguments
        {"_target_": "optuna.samplers.TPESampler", "seed": 123},
        {"name": "tpe", "seed": 123},  # rnnlab's short form
    ],
)
def test_sampler_forms_equal_the_tpe_option(sampler_conf: dict[str, Any]) -> None:
    node = compose_sweeper()["sampler"] | sampler_conf
    sampler, _ = samplers.create_sampler(node, SPACE)
    assert first_params(sampler) == first_params(reference("tpe", seed=123))


def test_tpe_arguments_from_the_command_line() -> None:
    """Without ``hydra/sweeper/sampler=tpe`` the node holds only the common keys: others need ``+``."""
    node = compose_sweeper("+hydra.sweeper.sampler.n_ei_candidates=12", "hydra.sweeper.sampler.seed=1")["sampler"]
    sampler, _ = samplers.create_sampler(node, SPACE)
    assert sampler._n_ei_candidates == 12 and sampler._n_startup_trials == 10  # the tpe option's default
    node = compose_sweeper("hydra/sweeper/sampler=tpe", "hydra.sweeper.sampler.n_ei_candidates=12")["sampler"]
    assert samplers.create_sampler(node, SPACE)[0]._n_ei_candidates == 12


def test_grid_of_the_original_grid_test() -> None:
    """tests/conf/test_grid.yaml: a stepped distribution's grid stops below high, as there."""
    space, _ = search_space.parse_search_space(
        {"x": "choice(-1, 1)", "y": "range(-1.0, 1.0, step=1)", "z": 'choice("foo", "bar")'}, []
    )
    assert samplers.grid_values("y", space["y"]) == [-1.0, 0.0]
    sampler, grid = samplers.create_sampler(compose_sweeper("hydra/sweeper/sampler=grid")["sampler"], space)
    assert grid == 8 and isinstance(sampler, optuna.samplers.GridSampler)
    assert samplers.grid_values("n", IntDistribution(1, 3)) == [1, 2]  # range(1,3): 1, 2 on a grid


# ----------------------------------------------------------------------------- pruners, directions


@pytest.mark.parametrize(
    ("spec", "cls", "attrs"),
    [
        (
            {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 2},
            optuna.pruners.MedianPruner,
            {"_n_startup_trials": 5, "_n_warmup_steps": 2},
        ),
        (  # hydra-optuna-sweeper's later HyperbandPrunerConfig, as composed
            {
                "_target_": "optuna.pruners.HyperbandPruner",
                "min_resource": 1,
                "max_resource": "auto",
                "reduction_factor": 3,
                "bootstrap_count": 0,
            },
            optuna.pruners.HyperbandPruner,
            {"_min_resource": 1, "_reduction_factor": 3},
        ),
        (
            {
                "_target_": "optuna.pruners.PatientPruner",
                "wrapped_pruner": {"_target_": "optuna.pruners.MedianPruner"},
                "patience": 2,
            },
            optuna.pruners.PatientPruner,
            {"_patience": 2},
        ),
        ({"name": "median", "n_startup_trials": 5}, optuna.pruners.MedianPruner, {"_n_startup_trials": 5}),
    ],
)
def test_pruner_forms(spec: dict[str, Any], cls: type, attrs: dict[str, Any]) -> None:
    node = compose_sweeper()["pruner"] | spec
    pruner = pruner_from_spec(samplers.pruner_spec(node))
    assert type(pruner) is cls
    for k, v in attrs.items():
        assert getattr(pruner, k) == v


class Direction(enum.Enum):  # hydra-optuna-sweeper's config.Direction
    minimize = 1
    maximize = 2


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("minimize", ["minimize"]),
        ("maximize", ["maximize"]),
        (["minimize", "minimize"], ["minimize", "minimize"]),
        (Direction.minimize, ["minimize"]),
        ([Direction.maximize, "minimize"], ["maximize", "minimize"]),
        (None, ["minimize"]),
    ],
)
def test_directions(direction: Any, expected: list[str]) -> None:
    """Without an objective or a ``monitor`` key the task's return value is the objective, as there."""
    got = Objectives.from_config(None, direction, OmegaConf.create({}))
    assert got.directions == expected and got.from_return


# ----------------------------------------------------------------------------- end to end, toy app


def app(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(APP), "-m", *args], cwd=cwd, env=ENV, text=True, capture_output=True, timeout=180
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def preset(tmp_path: Path, text: str) -> list[str]:
    """A sweep preset in a config dir of its own, as a user adds one: ``--config-dir DIR sweep=x``."""
    (tmp_path / "conf" / "sweep").mkdir(parents=True, exist_ok=True)
    (tmp_path / "conf" / "sweep" / "x.yaml").write_text("# @package _global_\n" + text)
    return ["--config-dir", str(tmp_path / "conf"), "sweep=x"]


def trial_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if "] trial " in ln]


def test_original_grid_test_runs_unchanged(tmp_path: Path) -> None:
    """tests/conf/test_grid.yaml (z -> opt, the toy app's categorical), on an app returning a float."""
    args = preset(
        tmp_path,
        """defaults:
  - override /hydra/sweeper: optuna
  - override /hydra/sweeper/sampler: grid
hydra:
  sweeper:
    direction: minimize
    study_name: sphere
    storage: null
    n_trials: 20
    params:
      x: choice(-1, 1)
      y: range(-1.0, 1.0, step=1)
      opt: choice("a", "b")
""",
    )
    app(tmp_path, *args, "~monitor", "returns=float", "hydra.sweep.dir=out", "hydra.sweeper.n_trials=10")
    results = OmegaConf.load(tmp_path / "out" / "optimization_results.yaml")
    assert results.name == "optuna"
    assert results.best_params.x in (-1, 1) and results.best_params.y in (-1.0, 0.0)
    assert results.best_params.opt in ("a", "b")
    assert not (tmp_path / "optuna.db").exists()
    assert len([p for p in (tmp_path / "out").iterdir() if p.name.isdigit()]) == 8  # min(n_trials, grid)


def test_original_multi_objective_example(tmp_path: Path) -> None:
    """example/multi-objective-conf: nsgaii, two directions, a list returned; Pareto solutions."""
    args = preset(
        tmp_path,
        """defaults:
  - override /hydra/sweeper: optuna
  - override /hydra/sweeper/sampler: nsgaii
hydra:
  sweeper:
    sampler:
      seed: 123
    direction: [minimize, minimize]
    study_name: multi-objective
    storage: null
    n_trials: 8
    n_jobs: 1
    params:
      x: range(0, 5, step=0.5)
      y: range(0, 3, step=0.5)
""",
    )
    app(tmp_path, *args, "~monitor", "returns=list", "hydra.sweep.dir=out", "hydra.sweeper.plots=false")
    results = OmegaConf.load(tmp_path / "out" / "optimization_results.yaml")
    assert results.name == "optuna" and len(results.solutions) >= 1
    for s in results.solutions:
        assert s.params.x % 0.5 == 0 and 0 <= s.params.x <= 5 and len(s["values"]) == 2


def test_custom_search_space(tmp_path: Path) -> None:
    """The custom-search-space example: define-by-run params, a new key ``+w``, a leading dot."""
    proc = app(
        tmp_path,
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=123",
        "hydra.sweeper.study_name=s",
        "hydra.sweeper.n_trials=5",
        "hydra.sweep.dir=out",
        "hydra.sweeper.plots=false",
        "+max_y_difference_from_x=0.3",
        "hydra.sweeper.custom_search_space=.custom_space.configure",
        "x=range(-1.0, 1.0, 0.5)",
        "opt=b",
    )
    study = load(tmp_path)
    assert len(study.trials) == 5 and all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert set(t.params) == {"x", "y", "+w"}
        assert abs(t.params["y"] - t.params["x"]) <= 0.3 and 0 <= t.params["+w"] <= 1
        assert t.user_attrs == {"opt": "b", "+max_y_difference_from_x": "0.3"}  # fixed values, as there
    overrides = OmegaConf.load(tmp_path / "out" / "0" / ".hydra" / "overrides.yaml")
    assert any(str(o).startswith("+w=") for o in overrides), overrides
    assert len(trial_lines(proc)) == 5


def test_n_jobs_is_a_batch_through_the_launcher(tmp_path: Path) -> None:
    proc = app(
        tmp_path,
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=7",
        "hydra.sweeper.n_jobs=3",
        "hydra.sweeper.plots=false",
        "hydra.sweep.dir=out",
        "x=interval(-1.0, 1.0)",
    )
    trials = load(tmp_path, "toy").trials  # study_name unset: the task's logger.experiment_name
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    # trials 0-2, 3-5 and 6 were asked together: each batch's last started before its first ended
    for first, last in ((0, 2), (3, 5)):
        assert trials[last].datetime_start < trials[first].datetime_complete
    assert trials[3].datetime_start > trials[2].datetime_complete
    assert "hydra.sweeper.n_workers=3 runs parallel worker processes" in proc.stdout + proc.stderr


@pytest.mark.slow  # over 15 s in CI; the default run keeps under 10 minutes
def test_storage_null_is_fresh_and_n_trials_a_total_otherwise(tmp_path: Path) -> None:
    args = ["hydra/sweeper=optuna", "hydra.sweeper.study_name=s", "hydra.sweeper.n_trials=3", "x=interval(-1.0, 1.0)"]
    for _ in range(2):  # storage: null -> a new in-memory study, n_trials more each time, no optuna.db
        proc = app(tmp_path, *args, "hydra.sweeper.storage=null", "hydra.sweeper.plots=false")
        assert len(trial_lines(proc)) == 3
    assert not (tmp_path / "optuna.db").exists()
    # persistent (the default, auto): n_trials is the study's total; a second run adds none
    assert len(trial_lines(app(tmp_path, *args, "hydra.sweeper.plots=false"))) == 3
    assert len(trial_lines(app(tmp_path, *args, "hydra.sweeper.plots=false"))) == 0
    assert len(load(tmp_path).trials) == 3
    assert len(trial_lines(app(tmp_path, *args, "hydra.sweeper.n_trials=5", "hydra.sweeper.plots=false"))) == 2


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["hydra.sweeper.sampler.name=tpee"],
            "hydra.sweeper.sampler: unknown sampler 'tpee'; valid choices: cmaes, grid, motpe, nsgaii, random, tpe",
        ),
        (
            ["+hydra.sweeper.sampler._target_=builtins.print"],
            "hydra.sweeper.sampler._target_: 'builtins.print' is not an Optuna sampler; valid choices:",
        ),
        (
            ["hydra/sweeper/sampler=tpe", "+hydra.sweeper.sampler.n_ei_candidate=3"],
            "hydra.sweeper.sampler.n_ei_candidate: not an argument of optuna.samplers.TPESampler; valid choices:",
        ),
        (
            ["hydra/sweeper/sampler=nsgaii", "hydra.sweeper.sampler.crossover_prob=1.5"],
            "hydra.sweeper.sampler: bad arguments for optuna.samplers.NSGAIISampler:",
        ),
        (
            ["+hydra.sweeper.pruner._target_=optuna.pruners.MedianPruner", "+hydra.sweeper.pruner.warmup=1"],
            "hydra.sweeper.pruner.warmup: not an argument of optuna.pruners.MedianPruner; valid choices:",
        ),
        (
            ["+hydra.sweeper.pruner._target_=optuna.samplers.TPESampler"],
            "hydra.sweeper.pruner._target_: 'optuna.samplers.TPESampler' is not an Optuna pruner; valid choices:",
        ),
        (
            ["hydra.sweeper.pruner.name=percentile", "hydra.sweeper.pruner.percentile=150.0"],
            "hydra.sweeper.pruner: bad arguments for pruner 'percentile':",
        ),
        (["y=range(1, 5, -1)"], "y: range() needs a positive step"),
        (["y=tag(log, interval(0.0, 1.0))"], "y: bad search space"),
        (["+hydra.sweeper.params.y='choice('"], "hydra.sweeper.params.y: cannot parse"),
        (
            ["+hydra.sweeper.search_space.y={type: floot, low: 0, high: 1}"],
            "hydra.sweeper.search_space.y.type: unknown type 'floot'; valid choices: categorical, float, int",
        ),
        (
            ["hydra.sweeper.custom_search_space=nowhere.configure"],
            "hydra.sweeper.custom_search_space: cannot import 'nowhere'",
        ),
        (
            ["hydra.sweeper.custom_search_space=custom_space.nothing"],
            "hydra.sweeper.custom_search_space: module 'custom_space' has no function 'nothing'",
        ),
        (["hydra.sweeper.storage=null", "hydra.sweeper.n_workers=2"], "hydra.sweeper.n_workers: worker processes"),
        (["hydra.sweeper.storage=foo://bar"], "hydra.sweeper.storage: unsupported URI 'foo://bar'"),
        (["hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs: must be >= 1, got 0"),
    ],
)
def test_bad_inputs_fail_before_any_trial(tmp_path: Path, args: list[str], line: str) -> None:
    proc = app(tmp_path, "hydra/sweeper=optuna", "x=interval(0.0, 1.0)", *args, check=False)
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(err) == 1 and err[0].startswith(f"rnnlab: error: {line}"), proc.stderr[-3000:]
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "multirun").exists()


def test_option_defaults_match_the_original() -> None:
    for name, option in sweeper_config.SAMPLER_OPTIONS.items():
        expected = {k: v for k, v in ORIGINAL_SAMPLERS[name].items() if not k.startswith("_")}
        assert sweeper_config.option_defaults(option) == expected, name
    # rnnlab's defaults where they differ (docs/sweeps.md): there n_jobs 2, max_failure_rate 0.0, storage None
    conf = sweeper_config.OptunaSweeperConf()
    assert (conf.n_jobs, conf.max_failure_rate, conf.storage) == (1, 0.25, "auto")
    with pytest.raises(ConfigError, match=r"^hydra\.sweeper\.sampler: set sampler\.name"):
        samplers.create_sampler({"name": "random", "_target_": "optuna.samplers.TPESampler"}, SPACE)


def test_original_deprecated_search_space_test(tmp_path: Path) -> None:
    """tests/conf/test_deprecated_search_space.yaml: the search_space dict form, with a warning."""
    args = preset(
        tmp_path,
        """defaults:
  - override /hydra/sweeper: optuna
hydra:
  sweeper:
    direction: minimize
    study_name: sphere
    storage: null
    n_trials: 4
    search_space:
      x:
        type: float
        low: -5.5
        high: 5.5
        step: 0.5
""",
    )
    proc = app(tmp_path, *args, "~monitor", "returns=float", "hydra.sweep.dir=out", "hydra.sweeper.plots=false")
    results = OmegaConf.load(tmp_path / "out" / "optimization_results.yaml")
    assert abs(results.best_params.x) <= 5.5 and results.best_params.x % 0.5 == 0
    assert "search_space is deprecated" in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- end to end, rnnlab

SPHERE = """# @package _global_
# hydra-optuna-sweeper's documented example (example/conf/config.yaml) on rnnlab's keys
defaults:
  - override /hydra/sweeper: optuna
  - override /hydra/sweeper/sampler: tpe

hydra:
  sweeper:
    sampler:
      seed: 123
    direction: minimize
    study_name: sphere
    storage: null
    n_trials: 3
    n_jobs: 1
    params:
      optimizer.lr: tag(log, interval(1e-4, 1e-1))
      backbone.hidden_size: choice(4, 8)
"""


@pytest.mark.slow  # over 15 s in CI; the default run keeps under 10 minutes
def test_documented_example_runs_unchanged_on_rnnlab(tmp_path: Path) -> None:
    pytest.importorskip("rnnlab.train")
    from conftest import SMALL, run_cli
    from mlflow.tracking import MlflowClient

    (tmp_path / "conf" / "sweep").mkdir(parents=True)
    (tmp_path / "conf" / "sweep" / "sphere.yaml").write_text(SPHERE)
    small = [a for a in SMALL if not a.startswith("backbone.hidden_size")]  # swept here
    args = ["--config-dir", str(tmp_path / "conf"), "-m", "sweep=sphere", *small, "hydra.sweep.dir=multirun/sphere"]
    for run in (1, 2):  # storage: null -> a fresh study each time: n_trials again, nothing resumed
        proc = run_cli(args, tmp_path, env={"PYTHONPATH": ENV["PYTHONPATH"]})
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert len(trial_lines(proc)) == 3, run
    assert not (tmp_path / "optuna.db").exists()
    results = OmegaConf.load(tmp_path / "multirun" / "sphere" / "optimization_results.yaml")
    assert results.name == "optuna" and set(results.best_params) == {"optimizer.lr", "backbone.hidden_size"}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    parents = [r for r in runs if r.data.tags.get("rnnlab.sweep") == "true"]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in parents)
    for parent in parents:
        assert sum(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in runs) == 3
