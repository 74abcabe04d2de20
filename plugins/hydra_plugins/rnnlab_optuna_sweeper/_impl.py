"""The sweep itself: search space, sampler, storage, trial accounting, workers, MLflow parent run.

How exact trial counting works (several workers in one process tree or on many machines):

* Every worker runs the same loop: under a study-wide lock it fails stale trials, counts the trials
  that use up the budget, and creates its next trial with ``study.ask`` only if the count is below
  ``n_trials``. The lock is ``flock`` on a file beside a SQLite or journal storage and a PostgreSQL
  advisory lock (MySQL: ``GET_LOCK``) for a server, so check-and-create is atomic across processes
  and machines; trial numbers themselves come from the storage.
* A trial counts unless it is FAIL *and* carries the ``rnnlab:stale`` mark: COMPLETE, PRUNED,
  RUNNING and trials that raised (FAIL with ``rnnlab:error``) all use a slot; a trial whose worker
  died does not, so its slot is re-run.
* A trial is stale when it is RUNNING and either its worker process on this host is gone (pid plus
  process start time, so a reused pid is not mistaken for it) or its heartbeat (a system attr the
  worker rewrites every ``heartbeat_interval`` seconds) is older than ``grace_period``. Our own
  heartbeat, not RDBStorage's, because Optuna's journal storage has none and we need the mark.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.pruning import PRUNER_ATTR, create_pruner, normalize_url, open_storage

log = logging.getLogger(__name__)

KEY = "hydra.sweeper"
SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "grid": "GridSampler",
    "nsgaii": "NSGAIISampler",
}
DIRECTIONS = ("maximize", "minimize")

# Trial system attrs written by the sweeper.
HOST_ATTR, PID_ATTR, PSTART_ATTR = "rnnlab:host", "rnnlab:pid", "rnnlab:pid_start"
HEARTBEAT_ATTR = "rnnlab:heartbeat"
ERROR_ATTR = "rnnlab:error"  # the trial raised: FAIL, counts toward n_trials
STALE_ATTR = "rnnlab:stale"  # the worker died or was interrupted: FAIL, slot re-run
OVERRIDES_ATTR = "rnnlab:overrides"
PARENT_RUN_ATTR = "rnnlab:mlflow_parent_run_id"  # study user attr

WORKER_ENV = "RNNLAB_SWEEP_WORKER"  # set in worker processes spawned for n_jobs > 1: the sweep dir


class SweepError(RnnlabError):
    """The sweep cannot go on (too many failed trials)."""

    exit_code = 1


# ----------------------------------------------------------------------------- search space


def _format_value(value: Any) -> str:
    """A sampled value as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def distribution_from_override(override: Override, key: str) -> BaseDistribution | None:
    """An Optuna distribution for a sweep override; None for a fixed value.

    ``choice(a, b)`` / ``a,b`` -> categorical; ``range(start, stop, step)`` -> int (or float) with a
    step, ``stop`` excluded as everywhere in Hydra; ``interval(low, high)`` -> float, int if both ends
    are ints (``int(interval(...))``); ``tag(log, interval(...))`` -> log scale.
    """
    if not override.is_sweep_override():
        return None
    value = override.value()
    try:
        if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
            choices = list(override.sweep_iterator(transformer=Transformer.encode))
            if not choices:
                raise ConfigError(key, "empty choice()")
            for c in choices:
                if not isinstance(c, (str, int, float, bool, type(None))):
                    raise ConfigError(key, f"choice values must be str, int, float, bool or null, got {c!r}")
            return CategoricalDistribution(choices)
        if isinstance(value, RangeSweep):
            assert value.start is not None and value.stop is not None
            values = list(override.sweep_iterator())
            if not values:
                raise ConfigError(key, f"empty range({value.start}, {value.stop}, {value.step})")
            if value.step < 0:
                return CategoricalDistribution(values)
            if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
                return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
            return IntDistribution(int(values[0]), int(values[-1]), step=int(value.step))
        if isinstance(value, IntervalSweep):
            assert value.start is not None and value.end is not None
            unknown = set(value.tags) - {"log"}
            if unknown:
                raise ConfigError(key, f"unknown tag {sorted(unknown)[0]!r}", ["log"])
            log_scale = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log_scale)
            return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    except ValueError as e:  # Optuna's own checks: low > high, log scale with low <= 0, ...
        raise ConfigError(key, f"bad search space {override.input_line!r}: {e}") from None
    kind = override.value_type.name if override.value_type else "?"
    raise ConfigError(key, f"sweep type {kind} is not supported", ["choice", "interval", "range", "tag(log, ...)"])


def parse_search_space(
    params: Mapping[str, Any] | None, arguments: Sequence[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """``(distributions, fixed overrides)`` from the ``params`` config and command-line arguments.

    A key on the command line replaces the same key in ``params``. Errors name the key.
    """
    parser = OverridesParser.create()
    lines: dict[str, tuple[str, str]] = {}  # key -> (override line, error key)
    for name, value in (params or {}).items():
        text = value if isinstance(value, str) else _format_value(value)
        lines[str(name)] = (f"{name}={text}", f"{KEY}.params.{name}")
    for arg in arguments:
        try:
            (override,) = parser.parse_overrides([arg])
        except HydraException as e:
            raise ConfigError(arg.split("=", 1)[0], f"cannot parse {arg!r}: {_one_line(e)}") from None
        lines[override.get_key_element()] = (arg, override.get_key_element())
    distributions: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for key, (line, err_key) in lines.items():
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as e:
            raise ConfigError(err_key, f"cannot parse {line.split('=', 1)[1]!r}: {_one_line(e)}") from None
        dist = distribution_from_override(override, err_key)
        if dist is None:
            fixed.append(override.input_line or line)
        else:
            distributions[key] = dist
    return distributions, fixed


def _one_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[-1] if lines else type(e).__name__


# ----------------------------------------------------------------------------- sampler, objectives


def _grid_values(key: str, dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = round((dist.high - dist.low) / dist.step)
        return [dist.low + i * dist.step for i in range(n + 1)]
    raise ConfigError(f"{KEY}.params.{key}", "the grid sampler needs choice() or range(), not interval()")


def create_sampler(
    conf: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]
) -> tuple[optuna.samplers.BaseSampler, int | None]:
    """``(sampler, grid size or None)`` by our name, with its seed and arguments."""
    import inspect

    name = conf.get("name", "tpe")
    if name not in SAMPLERS:
        raise ConfigError(f"{KEY}.sampler", f"unknown sampler {name!r}", SAMPLERS)
    kwargs: dict[str, Any] = {
        k: conf[k]
        for k in ("seed", "n_startup_trials", "multivariate", "constant_liar", "population_size")
        if conf.get(k) is not None
    }
    kwargs.update(conf.get("kwargs") or {})
    grid_size = None
    if name == "grid":
        if not distributions:
            raise ConfigError(f"{KEY}.params", "the grid sampler needs at least one choice() or range() param")
        space = {k: _grid_values(k, d) for k, d in distributions.items()}
        grid_size = math.prod(len(v) for v in space.values())
        kwargs["search_space"] = space
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError(f"{KEY}.sampler", "sampler 'cmaes' needs the cmaes package: pip install cmaes") from None
    cls = getattr(optuna.samplers, SAMPLERS[name])
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "search_space")]
    for arg in kwargs:
        if arg not in accepted and arg != "search_space":
            raise ConfigError(f"{KEY}.sampler.{arg}", f"not an argument of sampler {name!r}", accepted)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**kwargs), grid_size
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{KEY}.sampler", f"bad arguments for sampler {name!r}: {e}") from None


def pruner_spec(conf: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": ..., **args}`` with the arguments that are set; validated by building the pruner."""
    spec = {k: v for k, v in conf.items() if v is not None}
    spec.setdefault("name", "none")
    args = {k: v for k, v in spec.items() if k != "name"}
    create_pruner(spec["name"], **args)
    return spec


def objectives_and_directions(objective: Any, direction: Any, task_cfg: DictConfig) -> tuple[list[str], list[str]]:
    def as_list(v: Any) -> list[Any]:
        return list(v) if isinstance(v, (list, tuple, ListConfig)) else [v]

    monitor = OmegaConf.select(task_cfg, "monitor", default=None)
    objectives = [str(o) for o in as_list(objective)] if objective is not None else []
    if not objectives:
        if monitor is None:
            raise ConfigError(f"{KEY}.objective", "not set, and the task config has no 'monitor' key")
        objectives = [str(monitor)]
    if direction is None:
        mode = OmegaConf.select(task_cfg, "monitor_mode", default="min")
        directions = ["maximize" if mode == "max" else "minimize"] * len(objectives)
    else:
        directions = [str(d) for d in as_list(direction)]
    for d in directions:
        if d not in DIRECTIONS:
            raise ConfigError(f"{KEY}.direction", f"unknown direction {d!r}", DIRECTIONS)
    if len(directions) != len(objectives):
        raise ConfigError(
            f"{KEY}.direction",
            f"{len(directions)} direction(s) for {len(objectives)} objective(s) {objectives}; give one per objective",
        )
    return objectives, directions


# ----------------------------------------------------------------------------- storage, lock, liveness


def resolve_storage(storage: str | None, tracking_uri: str | None) -> str:
    """An absolute storage URL; default ``sqlite:///optuna.db`` beside a SQLite MLflow store."""
    if storage is None:
        base = Path.cwd()
        if tracking_uri and tracking_uri.startswith("sqlite:///"):
            base = (Path.cwd() / tracking_uri[len("sqlite:///") :]).parent
        return f"sqlite:///{(base / 'optuna.db').resolve()}"
    for scheme in ("sqlite:///", "journal:///"):
        if storage.startswith(scheme):
            path = storage[len(scheme) :]
            if path and not path.startswith("/") and not path.startswith(":memory:"):
                return f"{scheme}{(Path.cwd() / path).resolve()}"
    return normalize_url(storage)


def redact(url: str) -> str:
    if "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://***@" + url.rsplit("@", 1)[1]


class StudyLock:
    """A lock shared by every worker of a study, on this machine or others (see module docstring)."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.url = storage_url
        self.key = int.from_bytes(hashlib.sha1(f"rnnlab:{study_name}".encode()).digest()[:8], "big", signed=True)
        self.name = f"rnnlab:{study_name}"[:64]
        self._thread_lock = threading.Lock()
        self._path: Path | None = None
        self._engine: Any = None
        for scheme in ("sqlite:///", "journal:///"):
            if storage_url.startswith(scheme):
                self._path = Path(storage_url[len(scheme) :] + ".rnnlab-lock")  # not ".lock": the journal uses it
        if self._path is None:
            dialect = storage_url.split(":", 1)[0].split("+", 1)[0]
            if dialect in ("postgresql", "mysql"):
                import sqlalchemy

                self._engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
                self._dialect = dialect
            else:
                log.warning("no cross-process lock for storage %s: trial counts may overshoot", redact(storage_url))

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._thread_lock:
            if self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with open(self._path, "a") as f:
                    fcntl.flock(f, fcntl.LOCK_EX)
                    try:
                        yield
                    finally:
                        fcntl.flock(f, fcntl.LOCK_UN)
            elif self._engine is not None:
                import sqlalchemy

                with self._engine.connect() as conn:
                    if self._dialect == "postgresql":
                        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
                        unlock = sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key}
                    else:
                        conn.execute(sqlalchemy.text("SELECT GET_LOCK(:n, -1)"), {"n": self.name})
                        unlock = sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": self.name}
                    try:
                        yield
                    finally:
                        conn.execute(*unlock)
            else:
                yield


def _process_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), None if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished
        return None
    return fields[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    now = _process_start(pid)
    return now is not None and (start is None or now == start)


def counts_toward_budget(t: FrozenTrial) -> bool:
    return not (t.state == TrialState.FAIL and STALE_ATTR in t.system_attrs)


def fail_stale_trials(study: optuna.Study, grace_period: float) -> list[int]:
    """Mark RUNNING trials whose worker is gone as FAIL (+ ``rnnlab:stale``); their numbers."""
    storage, host, now = study._storage, socket.gethostname(), time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        sa = t.system_attrs
        reason = None
        if sa.get(HOST_ATTR) == host and sa.get(PID_ATTR) is not None and not _alive(sa[PID_ATTR], sa.get(PSTART_ATTR)):
            reason = f"its worker (pid {sa[PID_ATTR]} on {host}) is gone"
        else:
            beat = sa.get(HEARTBEAT_ATTR)
            if beat is None and t.datetime_start is not None:
                beat = t.datetime_start.timestamp()
            if beat is not None and now - beat > grace_period:
                reason = f"no heartbeat for {now - beat:.0f} s (grace_period {grace_period:g} s)"
        if reason is None:
            continue
        try:
            storage.set_trial_system_attr(t._trial_id, STALE_ATTR, reason)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # it finished meanwhile
        log.warning("trial %d marked FAIL: %s; its slot will be re-run", t.number, reason)
        failed.append(t.number)
    return failed


class Heartbeat:
    """Stamps a running trial every ``interval`` seconds from a daemon thread."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rnnlab-heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                return
            except Exception as e:  # a busy database must not kill the worker; the next beat retries
                log.debug("heartbeat failed: %s", e)


def _quote(value: Any) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _set_pdeathsig() -> None:  # runs in the worker child before exec: die with the sweep's main process
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ----------------------------------------------------------------------------- the sweeper


class OptunaSweeperImpl:
    def __init__(
        self,
        study_name: str | None = None,
        storage: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        objective: Any = None,
        direction: Any = None,
        sampler: Any = None,
        pruner: Any = None,
        max_failure_rate: float = 0.25,
        params: Any = None,
        heartbeat_interval: float = 10.0,
        grace_period: float = 60.0,
        mlflow: bool = True,
        plots: bool = True,
    ) -> None:
        def plain(v: Any) -> Any:
            return OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig)) else v

        self.study_name_conf, self.storage_conf = study_name, storage
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.objective_conf, self.direction_conf = plain(objective), plain(direction)
        self.sampler_conf: dict[str, Any] = plain(sampler) or {}
        self.pruner_conf: dict[str, Any] = plain(pruner) or {}
        self.max_failure_rate = float(max_failure_rate)
        self.params_conf: dict[str, Any] | None = plain(params)
        self.heartbeat_interval, self.grace_period = float(heartbeat_interval), float(grace_period)
        self.use_mlflow, self.use_plots = bool(mlflow), bool(plots)
        self.worker_of: str | None = os.environ.get(WORKER_ENV)  # sweep dir, in a spawned worker

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

    # ------------------------------------------------------------------ sweep

    def _check_settings(self) -> None:
        if self.n_trials < 1:
            raise ConfigError(f"{KEY}.n_trials", f"must be >= 1, got {self.n_trials}")
        if self.n_jobs < 1:
            raise ConfigError(f"{KEY}.n_jobs", f"must be >= 1, got {self.n_jobs}")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(f"{KEY}.max_failure_rate", f"must be in [0, 1], got {self.max_failure_rate}")
        if self.heartbeat_interval <= 0 or self.grace_period <= self.heartbeat_interval:
            raise ConfigError(f"{KEY}.grace_period", "must be > heartbeat_interval > 0")

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.config is not None and self.launcher is not None
        cfg = self.config
        optuna.logging.set_verbosity(optuna.logging.WARNING)

        # Everything a user can get wrong is checked before the study is touched.
        self._check_settings()
        self.distributions, self.fixed = parse_search_space(self.params_conf, arguments)
        self.objectives, self.directions = objectives_and_directions(self.objective_conf, self.direction_conf, cfg)
        self.sampler, grid_size = create_sampler(self.sampler_conf, self.distributions)
        self.pruner = pruner_spec(self.pruner_conf)
        if self.pruner["name"] != "none":
            if len(self.objectives) > 1:
                raise ConfigError(f"{KEY}.pruner", "Optuna cannot prune a multi-objective study; set pruner.name=none")
            mode = OmegaConf.select(cfg, "monitor_mode", default=None)
            want = {"min": "minimize", "max": "maximize"}.get(mode or "", self.directions[0])
            if want != self.directions[0]:
                raise ConfigError(
                    f"{KEY}.direction",
                    f"{self.directions[0]!r} disagrees with monitor_mode {mode!r}; the pruner compares the "
                    "monitored values in the study's direction",
                )
        self.budget = min(self.n_trials, grid_size) if grid_size else self.n_trials
        self.tracking_uri = OmegaConf.select(cfg, "logger.tracking_uri", default=None)
        self.experiment_name = OmegaConf.select(cfg, "logger.experiment_name", default=None)
        self.study_name = self.study_name_conf or self.experiment_name or cfg.hydra.job.name
        self.storage_url = resolve_storage(self.storage_conf, self.tracking_uri)
        self.trial_prefix = "" if "trial" in cfg else "+"

        self.lock = StudyLock(self.storage_url, self.study_name)
        with self.lock():  # creating the schema of a new database is not safe to race either
            self.storage = open_storage(self.storage_url)
            self.study = optuna.create_study(
                study_name=self.study_name,
                storage=self.storage,
                sampler=self.sampler,
                directions=self.directions,
                load_if_exists=True,
            )
        if list(self.study.directions) != [optuna.study.StudyDirection[d.upper()] for d in self.directions]:
            have = [d.name.lower() for d in self.study.directions]
            raise ConfigError(
                f"{KEY}.direction",
                f"study {self.study_name!r} in {redact(self.storage_url)} was created with {have}, not "
                f"{self.directions}; set {KEY}.study_name to start a new study",
            )

        self.sweep_dir = Path(cfg.hydra.sweep.dir).resolve()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        main = self.worker_of is None
        if main:
            OmegaConf.save(cfg, self.sweep_dir / "multirun.yaml")
        self.parent_run_id = self._start_parent_run() if main else self.study.user_attrs.get(PARENT_RUN_ATTR)

        done_before = sum(counts_toward_budget(t) for t in self.study.get_trials(deepcopy=False))
        if main:
            log.info(
                "study %r in %s: %d of %d trials already counted; sweep dir %s",
                self.study_name,
                redact(self.storage_url),
                done_before,
                self.budget,
                self.sweep_dir,
            )
        self.t_start = time.time()
        workers: list[subprocess.Popen[bytes]] = []
        returns: list[JobReturn] = []
        status = "FAILED"
        try:
            if main and self.n_jobs > 1:
                workers = self._spawn_workers(self.n_jobs - 1)
            returns = self._work()
            for p in workers:
                if p.wait() != 0:
                    log.warning("worker pid %d exited with code %d", p.pid, p.returncode)
            workers = []
            self._check_failures()
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            for p in workers:  # stopping early: the workers' trials are marked FAIL (stale) and re-run later
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)
            for p in workers:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
            if main:
                self._finish(status)
        return returns

    def _spawn_workers(self, n: int) -> list[subprocess.Popen[bytes]]:
        argv = [sys.executable, *sys.orig_argv[1:]]
        env = {**os.environ, WORKER_ENV: str(self.sweep_dir)}
        log.info("starting %d worker process(es): %s", n, " ".join(argv))
        return [subprocess.Popen(argv, env=env, preexec_fn=_set_pdeathsig) for _ in range(n)]

    # ------------------------------------------------------------------ trials

    def _next_trial(self) -> optuna.trial.Trial | None:
        with self.lock():
            fail_stale_trials(self.study, self.grace_period)
            self._check_failures()
            counted = sum(counts_toward_budget(t) for t in self.study.get_trials(deepcopy=False))
            if counted >= self.budget:
                return None
            trial = self.study.ask(fixed_distributions=self.distributions)
            pid = os.getpid()
            for key, value in (
                (HOST_ATTR, socket.gethostname()),
                (PID_ATTR, pid),
                (PSTART_ATTR, _process_start(pid)),
                (HEARTBEAT_ATTR, time.time()),
                (PRUNER_ATTR, self.pruner),
            ):
                self.storage.set_trial_system_attr(trial._trial_id, key, value)
            return trial

    def _check_failures(self) -> None:
        failed = [
            t for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if ERROR_ATTR in t.system_attrs
        ]
        allowed = self.max_failure_rate * self.n_trials
        if len(failed) > allowed:
            last = max(failed, key=lambda t: t.number)
            raise SweepError(
                f"{KEY}.max_failure_rate: {len(failed)} of {self.n_trials} trials failed (more than "
                f"{self.max_failure_rate:g} x n_trials); last, trial {last.number}: {last.system_attrs[ERROR_ATTR]}"
            )

    def _work(self) -> list[JobReturn]:
        returns = []
        while (trial := self._next_trial()) is not None:
            returns.append(self._run_trial(trial))
        return returns

    def _run_trial(self, trial: optuna.trial.Trial) -> JobReturn:
        assert self.launcher is not None
        p = self.trial_prefix
        params = [f"{k}={_format_value(v)}" for k, v in trial.params.items()]
        identity = [
            f"{p}trial.study_name={_quote(self.study_name)}",
            f"{p}trial.storage={_quote(self.storage_url)}",
            f"{p}trial.number={trial.number}",
        ]
        if self.parent_run_id:
            identity.append(f"{p}trial.mlflow_parent_run_id={_quote(self.parent_run_id)}")
        self.storage.set_trial_system_attr(trial._trial_id, OVERRIDES_ATTR, [*self.fixed, *params])
        t0 = time.time()
        try:
            with Heartbeat(self.storage, trial._trial_id, self.heartbeat_interval):
                ret = self.launcher.launch([[*self.fixed, *params, *identity]], initial_job_idx=trial.number)[0]
        except BaseException as e:  # interrupted (Ctrl-C, SIGTERM) or the launcher broke: re-run this slot later
            with contextlib.suppress(Exception):
                self.storage.set_trial_system_attr(trial._trial_id, STALE_ATTR, f"interrupted: {type(e).__name__}")
                self.study.tell(trial, state=TrialState.FAIL)
            raise
        state, values, error = self._outcome(ret)
        try:
            if error is not None:
                self.storage.set_trial_system_attr(trial._trial_id, ERROR_ATTR, error[:2000])
            self.study.tell(trial, values=values, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError) as e:
            log.warning("trial %d: result dropped, the trial was finished elsewhere (%s)", trial.number, e)
        self._progress(trial.number, state, values, time.time() - t0, error)
        return ret

    def _outcome(self, ret: JobReturn) -> tuple[TrialState, list[float] | None, str | None]:
        # Not ``ret.return_value``: on failure it re-raises and writes a line to stderr.
        if ret.status != JobStatus.COMPLETED:
            e = ret._return_value
            if isinstance(e, optuna.TrialPruned):
                return TrialState.PRUNED, None, None
            log.error("trial failed: %s: %s", type(e).__name__, e, exc_info=e)
            return TrialState.FAIL, None, f"{type(e).__name__}: {e}"
        result = ret.return_value
        if not isinstance(result, Mapping):
            return TrialState.FAIL, None, f"the task returned {type(result).__name__}, not a dict of metrics"
        values = []
        for name in self.objectives:
            if name not in result:
                have = ", ".join(sorted(map(str, result))) or "(none)"
                return TrialState.FAIL, None, f"objective {name!r} not in the task's metrics: {have}"
            value = float(result[name])
            if not math.isfinite(value):
                return TrialState.FAIL, None, f"objective {name!r} is {value}"
            values.append(value)
        return TrialState.COMPLETE, values, None

    def _progress(
        self, number: int, state: TrialState, values: list[float] | None, seconds: float, error: str | None
    ) -> None:
        value = ", ".join(f"{v:.6g}" for v in values) if values else "-"
        if len(self.directions) == 1:
            try:
                best_trial = self.study.best_trial
                best = f"{best_trial.value:.6g} (trial {best_trial.number})"
            except ValueError:
                best = "-"
        else:
            best = f"{len(self.study.best_trials)} on the Pareto front"
        line = (
            f"trial {number:>3} {state.name:<8} value={value}  best={best}  {seconds:.1f}s  "
            f"(sweep {time.time() - self.t_start:.0f}s)"
        )
        if error:
            line += f"  error: {error.splitlines()[0][:200]}"
        log.info(line)

    # ------------------------------------------------------------------ MLflow parent run, summary

    def _mlflow_client(self) -> Any:
        if not (self.use_mlflow and self.tracking_uri):
            return None
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def _start_parent_run(self) -> str | None:
        if not (self.use_mlflow and self.tracking_uri):
            return None
        name = self.experiment_name or self.study_name
        # Under the lock: two sweeps starting at once must not both create the MLflow store's tables
        # (MLflow's SQLite migration is not concurrency-safe) or two parent runs.
        with self.lock():
            client = self._mlflow_client()
            run_id = self.study.user_attrs.get(PARENT_RUN_ATTR)
            if run_id:
                try:
                    client.get_run(run_id)
                    client.update_run(run_id, status="RUNNING")
                    log.info("resuming MLflow parent run %s", run_id)
                    return run_id
                except Exception:
                    log.warning("MLflow parent run %s not found in %s; starting a new one", run_id, self.tracking_uri)
            exp = client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp else client.create_experiment(name)
            run = client.create_run(
                exp_id,
                run_name=f"sweep-{self.study_name}",
                tags={
                    "rnnlab.sweep": "true",
                    "optuna.study_name": self.study_name,
                    "optuna.storage": redact(self.storage_url),
                },
            )
            run_id = run.info.run_id
            self.study.set_user_attr(PARENT_RUN_ATTR, run_id)
        from mlflow.entities import Param

        params = {
            "n_trials": self.n_trials,
            "sampler": self.sampler_conf.get("name", "tpe"),
            "sampler.seed": self.sampler_conf.get("seed"),
            "pruner": self.pruner["name"],
            "objective": ",".join(self.objectives),
            "direction": ",".join(self.directions),
            **{f"space.{k}": repr(d) for k, d in self.distributions.items()},
        }
        with contextlib.suppress(Exception):
            client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return run_id

    def _finish(self, status: str) -> None:
        try:
            trials = self.study.get_trials(deepcopy=False)
            counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
            running = counts["RUNNING"]
            log.info(
                "study %r: %s",
                self.study_name,
                ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trials",
            )
            t0 = time.time()
            files = self._write_results(trials)
            plots = self._plots() if self.use_plots else []
            log.info("results in %s (%.1f s)", self.sweep_dir, time.time() - t0)
        except Exception as e:
            log.warning("sweep summary failed: %s", e)
            files, plots, running, counts = [], [], 0, {}
        client = self._mlflow_client()
        if client is None or not self.parent_run_id:
            return
        try:
            self._log_parent(client, counts, files, plots)
        except Exception as e:
            log.warning("logging the sweep to MLflow failed: %s", e)
        if status == "FINISHED" and running:
            log.info("%d trial(s) still running elsewhere; the worker that ends last closes the parent run", running)
            return
        client.set_terminated(self.parent_run_id, status=status)

    def _best(self) -> FrozenTrial | None:
        if len(self.directions) > 1:
            return None
        try:
            return self.study.best_trial
        except ValueError:
            return None

    def _write_results(self, trials: list[FrozenTrial]) -> list[Path]:
        files = []
        results: dict[str, Any] = {
            "study_name": self.study_name,
            "storage": redact(self.storage_url),
            "objective": self.objectives,
            "direction": self.directions,
        }
        best = self._best()
        if len(self.directions) > 1:
            results["pareto_front"] = [
                {"number": t.number, "values": t.values, "params": t.params} for t in self.study.best_trials
            ]
        elif best is not None:
            results.update(best_trial=best.number, best_value=best.value, best_params=best.params)
            path = self.sweep_dir / "best.yaml"
            path.write_text(self._best_yaml(best))
            files.append(path)
        path = self.sweep_dir / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), path)
        files.append(path)
        return files

    def _best_yaml(self, best: FrozenTrial) -> str:
        """A primary config that composes the best trial's job: the app's own config, the trial's
        group choices in the defaults list, its values below. ``--config-dir <sweep dir>
        --config-name best`` runs it, with the schemas and interpolations of a normal run."""
        assert self.hydra_context is not None and self.config is not None
        loader = self.hydra_context.config_loader
        overrides = list(best.system_attrs.get(OVERRIDES_ATTR) or [])
        defaults: list[Any] = [self.config.hydra.job.config_name]
        values = OmegaConf.create()
        for o in OverridesParser.create().parse_overrides(overrides):
            key = o.key_or_group
            if o.is_delete():
                continue
            if "." not in key and o.package is None and loader.get_group_options(key):
                defaults.append({f"/{key}" if o.is_add() else f"override /{key}": o.value()})
            else:
                OmegaConf.update(values, key, o.value(), force_add=True)
        defaults.append("_self_")
        body = OmegaConf.create({"defaults": defaults})
        body.merge_with(values)
        value = ", ".join(f"{o}={v:.6g}" for o, v in zip(self.objectives, best.values, strict=True))
        prog = "python -m rnnlab" if self.config.hydra.job.name in ("cli", "__main__", "rnnlab") else "python <app>"
        header = [
            f"# Best trial {best.number} of Optuna study {self.study_name!r}: {value}",
            "# Re-run it as a single run:",
            f"#   {prog} --config-dir {self.sweep_dir} --config-name best",
            "# which is the same as:",
            f"#   {prog} {' '.join(overrides)}",
        ]
        return "\n".join(header) + "\n" + OmegaConf.to_yaml(body)

    def _plots(self) -> list[Path]:
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm

        out = self.sweep_dir / "plots"
        out.mkdir(exist_ok=True)
        kwargs: dict[str, Any] = {}
        if len(self.directions) == 1:
            kwargs["target_name"] = self.objectives[0]
            makers = {
                "optimization_history": ovm.plot_optimization_history,
                "param_importances": ovm.plot_param_importances,
                "parallel_coordinate": ovm.plot_parallel_coordinate,
                "intermediate_values": ovm.plot_intermediate_values,
            }
        else:
            kwargs["target_names"] = self.objectives
            makers = {"pareto_front": ovm.plot_pareto_front}
        paths = []
        for name, make in makers.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    args = {} if name == "intermediate_values" else kwargs
                    ax = make(self.study, **args)
                fig = ax if hasattr(ax, "savefig") else getattr(ax, "figure", None) or ax.flat[0].figure
                fig.set_size_inches(9, 6)
                path = out / f"{name}.png"
                fig.savefig(path, dpi=100, bbox_inches="tight")
                plt.close(fig)
                paths.append(path)
            except Exception as e:  # too few trials for importances, a single param, ...
                log.info("plot %s skipped: %s", name, _one_line(e))
        return paths

    def _log_parent(self, client: Any, counts: Mapping[str, int], files: list[Path], plots: list[Path]) -> None:
        from mlflow.entities import Metric, RunTag

        assert self.parent_run_id is not None
        now = int(time.time() * 1000)
        finished = sum(counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))
        metrics = [Metric(f"trials_{s.lower()}", float(n), now, finished) for s, n in counts.items()]
        tags = []
        best = self._best()
        if best is not None:
            metrics.append(Metric(f"best/{self.objectives[0]}", float(best.value), now, finished))
            tags.append(RunTag("best.trial_number", str(best.number)))
            tags += [RunTag(f"best.{k}", str(v)[:5000]) for k, v in best.params.items()]
        client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)
        for path in files:
            client.log_artifact(self.parent_run_id, str(path))
        for path in plots:
            client.log_artifact(self.parent_run_id, str(path), artifact_path="plots")
