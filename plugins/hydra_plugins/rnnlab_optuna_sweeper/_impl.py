"""The trial loop: check the config, open the study, ask a batch of ``n_jobs`` trials under the
study-wide lock, launch them through Hydra's launcher, tell Optuna how each ended.

The search space, sampler, objectives, the study's identity and sampler sessions, liveness (locks,
heartbeats, stale trials), worker processes and the sweep's record (MLflow parent run, results,
plots) live in modules of their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from optuna.trial import TrialState

from rnnlab import stores
from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.pruning import PRUNER_ATTR, open_storage, register_in_memory

from . import _workers as workers
from ._identity import SEED_ATTR, StudyIdentity, session_seed, take_session
from ._liveness import (
    ERROR_ATTR,
    OVERRIDES_ATTR,
    Heartbeat,
    StudyLock,
    counts_toward_budget,
    fail_stale_trials,
    mark_stale,
    owner_attrs,
)
from ._objectives import Objectives
from ._results import PARENT_RUN_ATTR, SweepRecord
from ._samplers import create_sampler, pruner_spec, prunes, sampler_seed
from ._search_space import format_value, load_custom_search_space, parse_search_space
from .config import KEY, STORAGE_AUTO

log = logging.getLogger(__name__)


class SweepError(RnnlabError):
    """The sweep cannot go on (too many failed trials)."""

    exit_code = 1


def resolve_storage(storage: str | None, tracking_uri: str | None) -> str | None:
    """An absolute storage URL; None (``storage: null``) for an in-memory study. ``auto``:
    ``optuna.db`` beside a SQLite MLflow store, else in the working directory."""
    if storage is None:
        return None
    if storage == STORAGE_AUTO:
        db = stores.sqlite_path(stores.absolute(tracking_uri)) if tracking_uri else None
        return f"{stores.SQLITE}{((db.parent if db else Path.cwd()) / 'optuna.db').resolve()}"
    stores.check_scheme(storage, f"{KEY}.storage", stores.STORAGE_SCHEMES)
    return stores.normalize_url(stores.absolute(storage))


def _quote(value: Any) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class OptunaSweeperImpl:
    def __init__(
        self,
        sampler: Any = None,
        direction: Any = None,
        storage: str | None = STORAGE_AUTO,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.25,
        search_space: Any = None,
        params: Any = None,
        custom_search_space: str | None = None,
        objective: Any = None,
        pruner: Any = None,
        n_workers: int = 1,
        heartbeat_interval: float = 10.0,
        grace_period: float = 60.0,
        mlflow: bool = True,
        plots: bool = True,
        seeds: Any = None,
    ) -> None:
        def plain(v: Any) -> Any:
            return OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig)) else v

        self.sampler_conf, self.direction_conf = plain(sampler), plain(direction)
        self.storage_conf, self.study_name_conf = storage, study_name
        self.n_trials, self.n_jobs, self.n_workers = int(n_trials), int(n_jobs), int(n_workers)
        self.max_failure_rate = float(max_failure_rate)
        self.search_space_conf, self.params_conf = plain(search_space), plain(params)
        self.custom_search_space = custom_search_space
        self.objective_conf, self.pruner_conf = plain(objective), plain(pruner)
        self.heartbeat_interval, self.grace_period = float(heartbeat_interval), float(grace_period)
        self.use_mlflow, self.use_plots = bool(mlflow), bool(plots)
        self.seeds_conf = plain(seeds)
        self.seeds: list[int] = []
        self.worker_of = workers.worker_of()  # the main process's sweep dir, in a spawned worker

        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        if self.worker_of:  # a spawned worker writes into the sweep dir of the main process
            with open_dict(config):
                config.hydra.sweep.dir = self.worker_of
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ------------------------------------------------------------------ checks, study

    def _check_settings(self) -> None:
        for key in ("n_trials", "n_jobs", "n_workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{KEY}.{key}", f"must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(f"{KEY}.max_failure_rate", f"must be in [0, 1], got {self.max_failure_rate}")
        if self.heartbeat_interval <= 0 or self.grace_period <= self.heartbeat_interval:
            raise ConfigError(f"{KEY}.grace_period", "must be > heartbeat_interval > 0")
        if self.seeds_conf is not None:
            from rnnlab.checks import seed_list

            self.seeds = seed_list(self.seeds_conf, f"{KEY}.seeds")
        if self.storage_conf is None and self.n_workers > 1:
            raise ConfigError(f"{KEY}.n_workers", "worker processes need a persistent storage, not storage: null")
        if self.storage_conf is None:  # the same check as rnnlab's CLI makes, for any app
            from rnnlab.checks import check_sweep_storage

            launcher = type(self.launcher)
            check_sweep_storage(None, f"{launcher.__module__}.{launcher.__qualname__}")

    def _check_pruner(self, cfg: DictConfig) -> None:
        if not prunes(self.pruner):
            return
        directions = self.objectives.directions
        if len(directions) > 1:
            raise ConfigError(f"{KEY}.pruner", "Optuna cannot prune a multi-objective study; set pruner.name=none")
        mode = OmegaConf.select(cfg, "monitor_mode", default=None)
        want = {"min": "minimize", "max": "maximize"}.get(mode or "", directions[0])
        if want != directions[0]:
            raise ConfigError(
                f"{KEY}.direction",
                f"{directions[0]!r} disagrees with monitor_mode {mode!r}; the pruner compares the "
                "monitored values in the study's direction",
            )

    def _open_study(self, identity: StudyIdentity) -> int:
        """Open (or create) the study, check it, store what it lacks; this process's sampler session."""
        self.lock = StudyLock(self.storage_url, self.study_name)
        want = [optuna.study.StudyDirection[d.upper()] for d in self.objectives.directions]
        assert self.config is not None
        with self.lock():  # creating the schema of a new database is not safe to race either
            if self.storage_url is None:
                self.storage: optuna.storages.BaseStorage = optuna.storages.InMemoryStorage()
                self.trial_storage = register_in_memory(self.storage)  # reachable by in-process jobs
            else:
                self.storage = open_storage(self.storage_url)
                self.trial_storage = self.storage_url
            self.study = optuna.create_study(
                study_name=self.study_name,
                storage=self.storage,
                sampler=self.sampler,
                directions=want,
                load_if_exists=True,
            )
            if list(self.study.directions) != want:
                have = [d.name.lower() for d in self.study.directions]
                raise ConfigError(
                    f"{KEY}.direction",
                    f"study {self.study_name!r} in {self.storage_label} was created with {have}, not "
                    f"{self.objectives.directions}; set {KEY}.study_name to start a new study",
                )
            # the settings its trials ran under (refused if they differ), then this process's sampler session
            identity.check_or_store(self.study, self.storage_label, str(self.config.hydra.sweep.dir))
            return take_session(self.study) if self.storage_url is not None else 0

    # ------------------------------------------------------------------ sweep

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        cfg = self.config
        optuna.logging.set_verbosity(optuna.logging.WARNING)

        # Everything a user can get wrong is checked before the study is touched.
        self._check_settings()
        self.distributions, self.fixed = parse_search_space(self.params_conf, arguments, self.search_space_conf)
        self.custom = load_custom_search_space(self.custom_search_space)
        self.objectives = Objectives.from_config(self.objective_conf, self.direction_conf, cfg)
        self.sampler, grid_size = create_sampler(self.sampler_conf, self.distributions)
        if grid_size:
            log.info("grid sampler: %d points, %d trials", grid_size, min(self.n_trials, grid_size))
        self.pruner = pruner_spec(self.pruner_conf)
        self._check_pruner(cfg)
        if self.seeds:
            if "seed" in {line.partition("=")[0].lstrip("+~") for line in self.fixed} | set(self.distributions):
                raise ConfigError(
                    f"{KEY}.seeds", "sets the seed of each trial's runs; seed cannot also be swept or fixed"
                )
            if len(self.seeds) > 1 and prunes(
                self.pruner
            ):  # a pruner judges one learning curve; a trial has one per seed
                log.info("%s.seeds=%s: trials are not pruned (one curve per seed)", KEY, self.seeds)
                self.pruner = {"name": "none"}
        self.budget = min(self.n_trials, grid_size) if grid_size else self.n_trials
        tracking_uri = OmegaConf.select(cfg, "logger.tracking_uri", default=None)
        experiment_name = OmegaConf.select(cfg, "logger.experiment_name", default=None)
        self.study_name = self.study_name_conf or experiment_name or cfg.hydra.job.name
        self.storage_url = resolve_storage(self.storage_conf, tracking_uri)
        self.storage_label = "in-memory" if self.storage_url is None else stores.redact(self.storage_url)
        self.trial_prefix = "" if "trial" in cfg else "+"
        if self.n_jobs > 1 and type(self.launcher).__name__ == "BasicLauncher" and not self.worker_of:
            log.info(
                "n_jobs=%d: batches of %d trials, run one after another by Hydra's basic launcher; "
                "%s.n_workers=%d runs parallel worker processes",
                *(self.n_jobs, self.n_jobs, KEY, self.n_jobs),
            )
        identity = StudyIdentity(
            self.distributions, self.fixed, self.custom_search_space, self.objectives.names, self.seeds
        )
        self._reseed(self._open_study(identity))

        self.sweep_dir = Path(cfg.hydra.sweep.dir).resolve()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        main = self.worker_of is None
        self.record = SweepRecord(
            self.study,
            self.objectives,
            self.sweep_dir,
            self.storage_label,
            tracking_uri if self.use_mlflow else None,
            experiment_name,
            self.use_plots,
        )
        if main:
            OmegaConf.save(cfg, self.sweep_dir / "multirun.yaml")
            self.parent_run_id = self.record.start_parent_run(self.lock, self._parent_params())
        else:
            self.parent_run_id = self.study.user_attrs.get(PARENT_RUN_ATTR)
        if main:
            done = sum(counts_toward_budget(t) for t in self.study.get_trials(deepcopy=False))
            log.info(
                "study %r in %s: %d of %d trials already counted; sweep dir %s",
                *(self.study_name, self.storage_label, done, self.budget, self.sweep_dir),
            )
        self.t_start = time.time()
        spawned: list[Any] = []
        returns: list[JobReturn] = []
        status = "FAILED"
        try:
            if main and self.n_workers > 1:
                spawned = workers.spawn(self.n_workers - 1, self.sweep_dir)
            while trials := self._next_trials():
                returns += self._run_batch(trials)
            workers.wait(spawned)
            spawned = []
            self._check_failures()
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            workers.stop(spawned)  # stopping early: their trials are marked stale and re-run later
            if main:
                self.record.finish(status, cfg, self.hydra_context.config_loader)
        return returns

    def _reseed(self, session: int) -> None:
        """A resume or another worker (session > 0) draws new points, not the first session's."""
        self.seed = session_seed(sampler_seed(self.sampler_conf), session)
        if session and self.seed is not None:
            log.info("sampler session %d of study %r: seed %d", session, self.study_name, self.seed)
            sampler, _ = create_sampler(self.sampler_conf, self.distributions, session)
            self.sampler = self.study.sampler = sampler

    def _parent_params(self) -> dict[str, Any]:
        return {
            "n_trials": self.n_trials,
            "sampler": type(self.sampler).__name__,
            "sampler.seed": (self.sampler_conf or {}).get("seed"),
            "pruner": self.pruner.get("name") or self.pruner.get("_target_"),
            "objective": ",".join(self.objectives.names),
            "seeds": ",".join(map(str, self.seeds)) if self.seeds else "",
            "direction": ",".join(self.objectives.directions),
            **{f"space.{k}": repr(d) for k, d in self.distributions.items()},
        }

    # ------------------------------------------------------------------ trials

    def _next_trials(self) -> list[optuna.trial.Trial]:
        """Up to ``n_jobs`` new trials, created under the lock while the budget allows."""
        with self.lock():
            fail_stale_trials(self.study, self.grace_period)
            self._check_failures()
            counted = sum(counts_toward_budget(t) for t in self.study.get_trials(deepcopy=False))
            trials = []
            for _ in range(min(self.n_jobs, self.budget - counted)):
                trial = self.study.ask(fixed_distributions=self.distributions)
                attrs = {**owner_attrs(), PRUNER_ATTR: self.pruner}
                if self.seed is not None:
                    attrs[SEED_ATTR] = self.seed
                for key, value in attrs.items():
                    self.storage.set_trial_system_attr(trial._trial_id, key, value)
                trials.append(trial)
            return trials

    def _check_failures(self) -> None:
        failed = [
            t for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if ERROR_ATTR in t.system_attrs
        ]
        if len(failed) > self.max_failure_rate * self.n_trials:
            last = max(failed, key=lambda t: t.number)
            raise SweepError(
                f"{KEY}.max_failure_rate: {len(failed)} of {self.n_trials} trials failed (more than "
                f"{self.max_failure_rate:g} x n_trials); last, trial {last.number}: {last.system_attrs[ERROR_ATTR]}"
            )

    def _overrides(self, trial: optuna.trial.Trial) -> list[str]:
        """The job's overrides: fixed values, sampled params (``params``, then ``custom_search_space``),
        the trial's identity (so the job can report to it for pruning)."""
        if self.custom is not None:
            try:
                self.custom(self.config, trial)
            except Exception:
                mark_stale(self.study, [trial._trial_id], "custom_search_space raised")
                raise
            fixed_keys = {line.partition("=")[0].lstrip("+~") for line in self.fixed}
            overlap = sorted(fixed_keys & {k.lstrip("+~") for k in trial.params})
            if overlap:
                mark_stale(self.study, [trial._trial_id], "custom_search_space overlaps fixed params")
                raise ConfigError(f"{KEY}.custom_search_space", f"suggests {overlap}, which are also fixed values")
        for line in self.fixed:  # as hydra-optuna-sweeper: fixed values are the trial's user attrs
            key, eq, value = line.partition("=")
            if eq:
                trial.set_user_attr(key, value)
        p = self.trial_prefix
        params = [f"{k}={format_value(v)}" for k, v in trial.params.items()]
        identity = [
            f"{p}trial.study_name={_quote(self.study_name)}",
            f"{p}trial.storage={_quote(self.trial_storage)}",
            f"{p}trial.number={trial.number}",
        ]
        if self.parent_run_id:
            identity.append(f"{p}trial.mlflow_parent_run_id={_quote(self.parent_run_id)}")
        self.storage.set_trial_system_attr(trial._trial_id, OVERRIDES_ATTR, [*self.fixed, *params])
        return [*self.fixed, *params, *identity]

    def _run_batch(self, trials: Sequence[optuna.trial.Trial]) -> list[JobReturn]:
        assert self.launcher is not None
        t0 = time.time()
        ids = [t._trial_id for t in trials]
        # with seeds, a trial is one job per seed (job number = trial number x seeds + the seed's index)
        per_trial = max(1, len(self.seeds))
        seeded: list[str | None] = [f"seed={s}" for s in self.seeds] or [None]
        try:
            overrides = [[*o, *([s] if s else [])] for o in (self._overrides(t) for t in trials) for s in seeded]
            numbers = [t.number for t in trials]
            with Heartbeat(self.storage, ids, self.heartbeat_interval):
                if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
                    rets = list(self.launcher.launch(overrides, initial_job_idx=numbers[0] * per_trial))
                else:  # another worker created trials in between: job numbers follow trial numbers
                    rets = [
                        ret
                        for i, n in enumerate(numbers)
                        for ret in self.launcher.launch(
                            overrides[i * per_trial : (i + 1) * per_trial], initial_job_idx=n * per_trial
                        )
                    ]
        except BaseException as e:  # interrupted (Ctrl-C, SIGTERM) or the launcher broke: re-run these slots
            mark_stale(self.study, ids, f"interrupted: {type(e).__name__}")
            raise
        for i, trial in enumerate(trials):
            runs = rets[i * per_trial : (i + 1) * per_trial]
            state, values, error = self.objectives.outcome_of(runs)
            try:
                if error is not None:
                    self.storage.set_trial_system_attr(trial._trial_id, ERROR_ATTR, error[:2000])
                if self.seeds:  # what the mean is made of
                    trial.set_user_attr("seeds", self.seeds)
                    per_seed = [self.objectives.outcome(r)[1] for r in runs]
                    trial.set_user_attr("values_per_seed", [v[0] if v else None for v in per_seed])
                for key, value in self.objectives.baselines_of(runs).items():  # for the sweep's verdict
                    trial.set_user_attr(key, value)
                self.study.tell(trial, values=values, state=state)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError) as e:
                log.warning("trial %d: result dropped, the trial was finished elsewhere (%s)", trial.number, e)
            self._progress(trial.number, state, values, time.time() - t0, error)
        return rets

    def _progress(
        self, number: int, state: TrialState, values: list[float] | None, seconds: float, error: str | None
    ) -> None:
        value = ", ".join(f"{v:.6g}" for v in values) if values else "-"
        if len(self.objectives.directions) == 1:
            best_trial = self.record.best()
            best = f"{best_trial.value:.6g} (trial {best_trial.number})" if best_trial else "-"
        else:
            best = f"{len(self.study.best_trials)} on the Pareto front"
        line = (
            f"trial {number:>3} {state.name:<8} value={value}  best={best}  {seconds:.1f}s  "
            f"(sweep {time.time() - self.t_start:.0f}s)"
        )
        if error:
            line += f"  error: {error.splitlines()[0][:200]}"
        log.info(line)


__all__ = ["OptunaSweeperImpl", "SweepError"]
