"""Sweep records stay honest (issue 7, point 8), on the toy app in real subprocesses: a resumed study or
a second worker never replays a seeded sampler's points; a study refuses trials run under another
search space or other fixed overrides; the sweep's MLflow artifacts lie beside the store."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from hydra_plugins.rnnlab_optuna_sweeper import _identity as identity
from hydra_plugins.rnnlab_optuna_sweeper._samplers import create_sampler
from optuna.distributions import FloatDistribution, IntDistribution, json_to_distribution
from test_sweeper import FAST, app, load

from rnnlab.errors import ConfigError

SPACE = ["x=interval(-1.0, 1.0)", "y=interval(-1.0, 1.0)", "epochs=1"]
RANDOM = ["hydra.sweeper.sampler.name=random", "hydra.sweeper.sampler.seed=0"]


def points(study: optuna.Study) -> list[tuple[float, float]]:
    return [(t.params["x"], t.params["y"]) for t in sorted(study.trials, key=lambda t: t.number)]


def fresh_points(n: int, seed: int) -> list[tuple[float, float]]:
    """What a seeded RandomSampler draws in a new study: the sequence a fresh sweep must keep."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = {"x": FloatDistribution(-1.0, 1.0), "y": FloatDistribution(-1.0, 1.0)}
    out = []
    for _ in range(n):
        t = study.ask(fixed_distributions=dists)
        out.append((t.params["x"], t.params["y"]))
        study.tell(t, 0.0)
    return out


def test_resume_draws_new_points_and_artifacts_lie_beside_the_store(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    app(tmp_path, *FAST, *RANDOM, *SPACE, "hydra.sweeper.n_trials=3")
    first = points(load(tmp_path))
    assert first == fresh_points(3, seed=0)  # a fresh seeded sweep is reproducible, as before

    # first run in a fresh directory: the sweep created the experiment, with artifacts in mlartifacts/
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("toy")
    assert exp.artifact_location == (tmp_path / "mlartifacts").as_uri()
    (parent,) = client.search_runs([exp.experiment_id], "tags.`rnnlab.sweep` = 'true'")
    artifacts = Path(parent.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(tmp_path / "mlartifacts") and (artifacts / "best.yaml").is_file()
    assert not (tmp_path / "mlruns").exists()

    app(tmp_path, *FAST, *RANDOM, *SPACE, "hydra.sweeper.n_trials=6")  # resume: same seed, 3 more trials
    study = load(tmp_path)
    after = points(study)
    assert after[:3] == first
    assert len(set(after)) == 6, after  # no trial replays an earlier one
    seeds = [t.system_attrs[identity.SEED_ATTR] for t in study.trials]
    assert seeds[:3] == [0, 0, 0] and len(set(seeds[3:])) == 1 and seeds[3] != 0
    assert study.user_attrs[identity.SESSIONS_ATTR] == 2


def test_workers_draw_different_points(tmp_path: Path) -> None:
    app(tmp_path, *FAST, *RANDOM, *SPACE, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_workers=3", "sleep=0.3")
    study = load(tmp_path)
    assert len(study.trials) == 6 and len({t.system_attrs["rnnlab:pid"] for t in study.trials}) >= 2
    assert len(set(points(study))) == 6, points(study)
    assert study.user_attrs[identity.SESSIONS_ATTR] == 3


def test_session_seed() -> None:
    assert identity.session_seed(None, 3) is None
    assert identity.session_seed(7, 0) == 7
    derived = {identity.session_seed(7, s) or 0 for s in range(1, 50)}
    assert len(derived) == 49 and 7 not in derived and all(0 <= d < 2**32 for d in derived)
    a, _ = create_sampler({"name": "tpe", "seed": 7}, {}, session=0)
    b, _ = create_sampler({"_target_": "optuna.samplers.TPESampler", "seed": 7}, {}, session=0)
    c, _ = create_sampler({"name": "tpe", "seed": 7}, {}, session=1)
    draw = [s._rng.rng.random_sample() for s in (a, b, c)]
    assert draw[0] == draw[1] != draw[2]


def test_which_fixed_overrides_count() -> None:
    same = identity.canonical_fixed(["+a=1", "b='x'", "c=1e-3", "logger.experiment_name=e", "trial.number=3"])
    assert same == identity.canonical_fixed(["a=1", "b=x", "c=0.001", "hydra.job.name=j", "output_dir=o"])
    assert identity.canonical_fixed(["~monitor", "backbone=gru"]) == {"backbone": '"gru"', "monitor": "~"}
    ident = identity.StudyIdentity({"x": FloatDistribution(0, 1)}, ["backbone=gru"], None, ["val/loss"])
    assert ident.differences(ident.attrs) == []
    assert ident.differences({}) == []  # a study from before: adopts these
    log_int = identity.StudyIdentity({"n": IntDistribution(8, 256, log=True)}, [], None, [])
    assert identity._show_distribution(IntDistribution(8, 256, log=True)) == "tag(log, int(interval(8, 256)))"
    assert identity._show_distribution(IntDistribution(1, 4)) == "range(1, 4, 1)"
    assert identity._show_distribution(FloatDistribution(0.0, 1.0, step=0.5)) == "range(0.0, 1.0, 0.5)"
    assert log_int.differences(log_int.attrs) == []
    other = identity.StudyIdentity({"x": FloatDistribution(0, 2)}, ["backbone=lstm", "seed=1"], None, ["val/acc"])
    assert other.differences(ident.attrs) == [
        "search space x: interval(0.0, 1.0) -> interval(0.0, 2.0)",
        'fixed backbone: "gru" -> "lstm"',
        "fixed seed=1 added",
        "objective ['val/loss'] -> ['val/acc']",
    ]
    dropped = identity.StudyIdentity({"x": FloatDistribution(0, 1)}, [], None, ["val/loss"])
    assert dropped.differences(ident.attrs) == ['fixed backbone="gru" dropped']


def test_study_refuses_other_settings(tmp_path: Path) -> None:
    base = [*FAST, *SPACE, "opt=b", "hydra.sweeper.n_trials=2"]
    app(tmp_path, *base)
    assert load(tmp_path).user_attrs[identity.FIXED_ATTR] == {"epochs": "1", "opt": '"b"'}

    def refused(*args: str) -> str:
        proc = app(tmp_path, *args, check=False)
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
        assert err[0].startswith("rnnlab: error: hydra.sweeper.study_name: study 's' in sqlite:///"), err[0]
        assert "set hydra.sweeper.study_name=s-2 hydra.sweep.dir=multirun/s-2 for a new study" in err[0]
        assert len(load(tmp_path).trials) == 2  # no trial added
        return err[0]

    assert 'fixed opt: "b" -> "a"' in refused(*[a for a in base if a != "opt=b"], "opt=a", "hydra.sweeper.n_trials=3")
    assert "search space x: interval(-1.0, 1.0) -> interval(-0.5, 1.0)" in refused(
        *base, "x=interval(-0.5, 1.0)", "hydra.sweeper.n_trials=3"
    )
    added = refused(*base, "+z=choice(1, 2)", "hydra.sweeper.n_trials=3")
    assert "search space +z=choice(1, 2) added" in added, added
    assert "objective ['val/loss'] -> ['test/loss']" in refused(
        *base, "hydra.sweeper.objective=test/loss", "hydra.sweeper.n_trials=3"
    )
    assert not list((tmp_path / "multirun" / "s").glob("2"))  # refused before any job

    # what cannot change a result is not compared: the budget, workers, the sampler, where it is logged
    app(tmp_path, *base, "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.name=random", "logger.experiment_name=t2")
    assert len(load(tmp_path).trials) == 3


def test_study_from_before_adopts_the_current_settings(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=SPACE_X, value=1.0))
    app(tmp_path, *FAST, "x=interval(-1.0, 1.0)", "hydra.sweeper.n_trials=2")
    study = load(tmp_path)
    assert len(study.trials) == 2 and study.user_attrs[identity.SESSIONS_ATTR] == 2  # it had trials: session 1
    assert json_to_distribution(study.user_attrs[identity.SPACE_ATTR]["x"]) == SPACE_X["x"]
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.study_name: study 's'"):
        other = identity.StudyIdentity({"x": FloatDistribution(0, 1)}, [], None, ["val/loss"])
        other.check_or_store(study, "here", "multirun/s")


def test_study_refuses_other_seeds(tmp_path: Path) -> None:
    """A trial's value is the mean over its seeds: a study resumed with other seeds would rank means
    over different seeds together."""
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    identity.StudyIdentity(SPACE_X, [], None, ["val/loss"], [0, 1]).check_or_store(study, "here", "multirun/s")
    assert study.user_attrs[identity.SEEDS_ATTR] == [0, 1]
    identity.StudyIdentity(SPACE_X, [], None, ["val/loss"], [0, 1]).check_or_store(study, "here", "multirun/s")
    for seeds, shown in [([0, 1, 2], "seeds [0, 1] -> [0, 1, 2]"), ([], "seeds [0, 1] -> none (one run a trial)")]:
        with pytest.raises(ConfigError, match=re.escape(shown)):
            identity.StudyIdentity(SPACE_X, [], None, ["val/loss"], seeds).check_or_store(study, "here", "multirun/s")


SPACE_X = {"x": FloatDistribution(-1.0, 1.0)}
