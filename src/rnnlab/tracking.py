"""MLflow tracking: run lifecycle, buffered metrics, params, tags, artifacts.

A run is always ended: FINISHED on success, FAILED on any exception, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from rnnlab import stores
from rnnlab.errors import ConfigError

log = logging.getLogger(__name__)

# MLflow refuses longer param values; a longer one is not truncated but listed in a tag,
# and the full resolved config is always logged as config.yaml.
MAX_PARAM_LENGTH = 6000


def resolve_tracking_uri(uri: str) -> str:
    """Make a relative ``sqlite:///file.db`` absolute (so runs land where the user ran the command)."""
    return stores.absolute(uri)


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


def get_or_create_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The id of MLflow experiment ``name``, created if needed with its artifacts beside a SQLite
    store (``mlartifacts/`` next to ``mlflow.db``, never ``./mlruns``). Safe when several processes
    create it at once."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ConfigError(
                "logger.experiment_name",
                f"experiment {name!r} is deleted in {stores.redact(tracking_uri)}; restore it or pick another name",
            )
        return str(exp.experiment_id)
    location = None
    db = stores.sqlite_path(stores.absolute(tracking_uri))
    if db is not None:  # artifacts beside the database, not in the working directory
        location = (db.parent / "mlartifacts").resolve().as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # another process created it first
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
    ) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        check_reachable(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        self.client = MlflowClient(self.tracking_uri)
        self.experiment_id = self._experiment(experiment_name)
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        if run_name:
            all_tags["mlflow.runName"] = run_name
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
        self.run_id: str = run.info.run_id
        self.artifact_uri: str = run.info.artifact_uri
        self.flush_every = flush_every
        self._metrics: list[Any] = []
        self._ended = False

    def _experiment(self, name: str) -> str:
        return get_or_create_experiment(self.client, name, self.tracking_uri)

    # -- logging ----------------------------------------------------------------------------------

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        too_long = sorted(k for k, v in params.items() if len(v) > MAX_PARAM_LENGTH)
        items = [Param(k, v) for k, v in params.items() if k not in too_long]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=items[i : i + 100], synchronous=True)
        if too_long:
            self.set_tags({"rnnlab.params_not_logged": ",".join(too_long) + " (see config.yaml)"})

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self._metrics) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._metrics:
            batch, self._metrics = self._metrics[:1000], self._metrics[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_model(self, model: Any, input_example: Any = None) -> None:
        """Log ``model`` (a plain nn.Module) so ``mlflow.pytorch.load_model`` returns it."""
        import mlflow
        import torch

        import rnnlab

        # Naming requirements skips MLflow's inference, which re-imports the model in a subprocess.
        reqs = [f"torch=={torch.__version__.split('+')[0]}", f"rnnlab=={rnnlab.__version__}"]
        with mlflow.start_run(run_id=self.run_id):
            mlflow.pytorch.log_model(model, name="model", pip_requirements=reqs, input_example=input_example)
            # start_run(run_id=...) ends the run on exit; re-open it until we end it ourselves.
        self.client.update_run(self.run_id, status="RUNNING")

    def end(self, status: str = "FINISHED") -> None:
        if self._ended:
            return
        self._ended = True
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)

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
