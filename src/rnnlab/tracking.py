"""MLflow tracking: run lifecycle, buffered metrics, params, tags, artifacts.

A run is always ended: FINISHED on success, FAILED on any exception, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from rnnlab import stores
from rnnlab.errors import ConfigError

log = logging.getLogger(__name__)

# MLflow refuses longer param values; a longer one is not truncated but listed in a tag,
# and the full resolved config is always logged as config.yaml.
MAX_PARAM_LENGTH = 6000

# The UI of MLflow 3 opens an experiment tagged "custom_model_development" ("Machine learning") on its
# runs; an untagged one may open on the GenAI overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# How long a write waits for another process's write to a SQLite store before failing with
# "database is locked" (Python's sqlite3 waits 5 s; eight runs starting at once on two cores took longer).
SQLITE_BUSY_TIMEOUT_S = 120


def resolve_tracking_uri(uri: str) -> str:
    """Make a relative ``sqlite:///file.db`` absolute (so runs land where the user ran the command)."""
    return stores.normalize_url(stores.absolute(uri))


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when a tracking server does not answer."""
    if stores.scheme(uri) not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # the server answered; an older server may lack /health
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConfigError(
            "logger.tracking_uri", f"cannot reach the MLflow server at {stores.redact(uri)}: {reason}"
        ) from None


def ui_command(uri: str) -> str:
    path = stores.sqlite_path(uri)
    if path is not None:
        return f"mlflow ui --backend-store-uri sqlite:///{path} --host 127.0.0.1 --port 5000"
    return f"open {stores.redact(uri)} in a browser"


def public_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers, every URI shown without its password: what is
    logged as params and written as config.yaml."""

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return stores.redact(node) if isinstance(node, str) else node

    return cast(dict[str, Any], scrub(OmegaConf.to_container(cfg, resolve=True)))


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML, passwords hidden (see ``public_config``)."""
    return OmegaConf.to_yaml(public_config(cfg))


def flatten(cfg: DictConfig) -> dict[str, str]:
    """``{"backbone.hidden_size": "64", ...}`` from the resolved config, passwords hidden."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = str(node)

    walk(public_config(cfg), "")
    return out


# Keys that say how or where a run was recorded, not which configuration it runs: two runs that differ
# only in these (and everything under them) belong to one group, e.g. the seeds of ``seeds=5``.
NOT_CONFIG = ("seed", "logger", "trial", "output_dir", "resume", "trainer.enable_progress_bar")
GROUP_TAG = "rnnlab.group"


def config_params(params: dict[str, str]) -> dict[str, str]:
    """``params`` without the keys of ``NOT_CONFIG``: what makes a run's configuration."""
    return {k: v for k, v in params.items() if not any(k == n or k.startswith(n + ".") for n in NOT_CONFIG)}


def group_tags(cfg: DictConfig) -> dict[str, str]:
    """``{"rnnlab.group": <12 hex digits>}``, a hash of the resolved config without ``NOT_CONFIG``:
    the same for every seed of one configuration, so tables can aggregate over seeds
    (``rnnlab compare --group``, or ``tags.rnnlab.group = '...'`` in MLflow's search)."""
    import hashlib
    import json

    text = json.dumps(sorted(config_params(flatten(cfg)).items()))
    return {GROUP_TAG: hashlib.sha1(text.encode()).hexdigest()[:12]}


def git_commit(cwd: str | os.PathLike = ".") -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def version_tags() -> dict[str, str]:
    import pytorch_lightning
    import torch

    import rnnlab

    tags = {
        "rnnlab.version": rnnlab.__version__,
        "torch.version": torch.__version__,
        "lightning.version": pytorch_lightning.__version__,
        "host": socket.gethostname(),
        "python.version": platform.python_version(),
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.commit"] = commit
    return tags


_lock = threading.RLock()
_lock_depth = 0
_schema_ready: set[str] = set()


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Serialize, across the processes of this machine, what MLflow cannot do concurrently on a SQLite
    store: create or migrate its schema, create an experiment. ``flock`` on a file beside the database
    (a local file system; see the README for what SQLite cannot hold). Re-entrant in a process; a
    no-op for a server or another database."""
    global _lock_depth
    db = stores.sqlite_path(resolve_tracking_uri(tracking_uri))
    if db is None:
        yield
        return
    with _lock:
        if _lock_depth:
            _lock_depth += 1
            try:
                yield
            finally:
                _lock_depth -= 1
            return
        db.parent.mkdir(parents=True, exist_ok=True)
        # not "<db>.rnnlab-lock": the sweeper locks a study with that name, and one file may be both stores
        with open(f"{db}.rnnlab-schema-lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            _lock_depth += 1
            try:
                yield
            finally:
                _lock_depth -= 1
                fcntl.flock(f, fcntl.LOCK_UN)


def open_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` on ``tracking_uri`` (a relative SQLite path made absolute) whose store is
    ready: a new SQLite store gets its schema created once, under ``store_lock``, so any number of
    processes may open a new store at once; SQLite writes wait for each other instead of failing with
    "database is locked"."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    if stores.sqlite_path(uri) is None or uri in _schema_ready:
        return MlflowClient(uri)
    _sqlite_waits_for_locks()
    with store_lock(uri):
        # MLflow creates or migrates the tables when a client is made (tracking store) and when it
        # first touches the model registry
        client = MlflowClient(uri)
        client.search_registered_models(max_results=1)
    _schema_ready.add(uri)
    return client


_busy_timeout_set = False


def _sqlite_waits_for_locks() -> None:
    """Every SQLite connection SQLAlchemy opens in this process waits ``SQLITE_BUSY_TIMEOUT_S`` for a
    lock (MLflow creates its engines itself and passes no timeout)."""
    global _busy_timeout_set
    if _busy_timeout_set:
        return
    import sqlite3

    import sqlalchemy

    def wait(dbapi_connection: Any, record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", wait)
    _busy_timeout_set = True


def metric_history(client: Any, run_id: str, key: str) -> list[Any]:
    """``key``'s history in step order, one point a step: the one logged last. A run resumed from a
    checkpoint older than its last logged epoch (stopped between logging an epoch and saving it)
    logs that epoch again at the same step, and the second value is the one training went on from."""
    last: dict[int, Any] = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
        last[m.step] = m
    return list(last.values())


def get_or_create_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The id of MLflow experiment ``name``, created if needed with its artifacts beside a SQLite
    store (``mlartifacts/`` next to ``mlflow.db``, never ``./mlruns``) and tagged so MLflow's UI opens
    it on its runs. Safe when several processes create it at once."""
    with store_lock(tracking_uri):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise ConfigError(
                    "logger.experiment_name",
                    f"experiment {name!r} is deleted in {stores.redact(tracking_uri)}; restore it or pick another name",
                )
            if not exp.tags.get("mlflow.experimentKind"):
                for key, value in EXPERIMENT_KIND.items():
                    client.set_experiment_tag(exp.experiment_id, key, value)
            return str(exp.experiment_id)
        location = None
        db = stores.sqlite_path(stores.absolute(tracking_uri))
        if db is not None:  # artifacts beside the database, not in the working directory
            location = (db.parent / "mlartifacts").resolve().as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND))
        except Exception:  # another machine created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)


class TrackedRun:
    """One MLflow run. Use as a context manager; metrics are buffered and sent with log_batch."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        flush_every: int = 100,
        spool_dir: str | os.PathLike[str] | None = None,
        sync_timeout: float = 60.0,
        run_id: str | None = None,
    ) -> None:
        import mlflow

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        check_reachable(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        self.client = open_client(self.tracking_uri)
        # Wraps each write to the store; RunLifecycle makes a signal wait until the write is done.
        self.guard: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
        self.experiment_id = self._experiment(experiment_name)
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        if run_name:
            all_tags["mlflow.runName"] = run_name
        if run_id is None:
            run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
        else:  # resume: the same run goes on; its tags say which process owns it now
            from mlflow.entities import RunTag

            run = self.client.get_run(run_id)
            self.client.update_run(run_id, status="RUNNING")
            owner = {k: v for k, v in all_tags.items() if k != "mlflow.runName"}
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in owner.items()], synchronous=True)
        self.run_id: str = run.info.run_id
        self.artifact_uri: str = run.info.artifact_uri
        self.flush_every = flush_every
        self._metrics: list[Any] = []
        self._ended = False
        # Everything after create_run goes through the spool: a local append, sent in order by a
        # background thread with a client of its own (fail-fast at start stays: create_run above).
        from rnnlab import spool as spooling

        if stores.scheme(self.tracking_uri) in ("http", "https"):
            spooling.quick_http_failures()
        directory = Path(spool_dir) if spool_dir is not None else Path("outputs") / "spool" / self.run_id
        self.spool = spooling.Spool(directory / spooling.SPOOL_NAME, self.tracking_uri, self.run_id)
        self.sender = spooling.Sender(self.spool, open_client(self.tracking_uri))
        self.sync_timeout = sync_timeout

    def _experiment(self, name: str) -> str:
        return get_or_create_experiment(self.client, name, self.tracking_uri)

    # -- logging ----------------------------------------------------------------------------------

    def _append(self, op: str, **args: Any) -> None:
        with self.guard():  # one whole line in the spool, never half of one
            self.spool.append(op, **args)
        self.sender.notify()

    def log_params(self, params: dict[str, str]) -> None:
        too_long = sorted(k for k, v in params.items() if len(v) > MAX_PARAM_LENGTH)
        items = [[k, v] for k, v in params.items() if k not in too_long]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self._append("batch", params=items[i : i + 100])
        if too_long:
            self.set_tags({"rnnlab.params_not_logged": ",".join(too_long) + " (see config.yaml)"})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._append("batch", tags=[[k, str(v)] for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._metrics.extend([k, float(v), now, step] for k, v in metrics.items())
        if len(self._metrics) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._metrics:
            batch, self._metrics = self._metrics[:1000], self._metrics[1000:]
            self._append("batch", metrics=batch)

    def log_text(self, text: str, path: str) -> None:
        """Kept as a file beside the spool until sent (the spool names files, it does not hold them)."""
        local = self.spool.path.parent / "spooled-artifacts" / path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text)
        self.log_artifact(local, str(Path(path).parent) if Path(path).parent != Path(".") else None)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._append("artifact", path=str(Path(local_path).resolve()), artifact_path=artifact_path)

    def log_model(self, model: Any, input_example: Any = None) -> None:
        """Log ``model`` (a plain nn.Module) so ``mlflow.pytorch.load_model`` returns it. When the
        store does not answer, the model is saved beside the spool and sent with it."""
        import mlflow
        import torch

        import rnnlab
        from rnnlab.spool import unreachable

        # Naming requirements skips MLflow's inference, which re-imports the model in a subprocess.
        reqs = [f"torch=={torch.__version__.split('+')[0]}", f"rnnlab=={rnnlab.__version__}"]
        try:
            with mlflow.start_run(run_id=self.run_id):
                mlflow.pytorch.log_model(model, name="model", pip_requirements=reqs, input_example=input_example)
                # start_run(run_id=...) ends the run on exit; re-open it until we end it ourselves.
            self.client.update_run(self.run_id, status="RUNNING")
        except Exception as e:
            if not unreachable(e):
                raise
            local = self.spool.path.parent / "spooled-artifacts" / "model"
            mlflow.pytorch.save_model(model, str(local), pip_requirements=reqs, input_example=input_example)
            self._append("artifacts", path=str(local.resolve()), artifact_path="model")

    def end(self, status: str = "FINISHED", wait: float | None = None) -> bool:
        """Send what is buffered and the final status; wait up to ``wait`` (default ``sync_timeout``)
        seconds for the store. False (and one line saying how to replay) when it did not answer."""
        if self._ended:
            return True
        self._ended = True
        try:
            self.flush()
        finally:
            self._append("status", status=status, end_time=int(time.time() * 1000))
        sent = self.sender.drain(self.sync_timeout if wait is None else wait)
        self.sender.close()
        if not sent:
            print(
                f"rnnlab: MLflow at {stores.redact(self.tracking_uri)} did not answer; {self.spool.pending()} "
                f"records of run {self.run_id} are kept in {self.spool.path}. Send them when it answers:\n"
                f"  cd {Path.cwd()} && python -m rnnlab sync",
                file=sys.stderr,
                flush=True,
            )
        return sent

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end("FINISHED" if exc_type is None else "FAILED")


def lightning_logger(run: TrackedRun) -> Any:
    """A Lightning logger that hands metrics to ``run``'s buffer."""
    from pytorch_lightning.loggers.logger import Logger
    from pytorch_lightning.utilities import rank_zero_only

    class _BufferedMLflowLogger(Logger):
        @property
        def name(self) -> str:
            return "mlflow"

        @property
        def version(self) -> str:
            return run.run_id

        @rank_zero_only
        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass  # the resolved config is logged as params by train()

        @rank_zero_only
        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            run.log_metrics(metrics, step or 0)

        @rank_zero_only
        def finalize(self, status: str) -> None:
            run.flush()

    return _BufferedMLflowLogger()
