"""A logged run, rebuilt: its MLflow record, its resolved config, its data module and its trained
model, without retraining. What ``rnnlab evaluate``, ``rnnlab predict`` and ``rnnlab diagnose`` load.

The config is the run's own ``config.yaml`` artifact (the resolved config it trained with), laid
over the schemas it names, so a default changed since then does not change the run. Overrides
(``data=csv data.path=load.csv``) go on top; a new data module keeps the run's settings that its
schema also has (``window``, ``horizon``, ``scaling``, ...) unless they are overridden.

The model is rebuilt from that config and its weights read from ``checkpoints/best.ckpt`` with
``torch.load(weights_only=True)``: no code runs from the file. A run without that checkpoint
(``logger.log_checkpoint=false``) has no model here; the error names its MLflow model, if it logged
one, for ``mlflow.pytorch.load_model``. Every error is one line (:class:`rnnlab.errors.RnnlabError`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import RnnlabError

CHECKPOINT = "checkpoints/best.ckpt"


def find_run(run_id: str, tracking_uri: str, command: str) -> tuple[Any, Any, str]:
    """``(client, run, uri)`` for ``run_id`` in the store; RnnlabError (prefixed ``command:``) when
    the store or the run is not there."""
    from mlflow.exceptions import MlflowException

    from rnnlab import stores, tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    db = stores.sqlite_path(uri)
    if db is not None and not db.is_file():
        raise RnnlabError(
            f"{command}: no MLflow store at {db} (run it where the run was started, or pass --tracking-uri)"
        )
    client = tracking.open_client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RnnlabError(f"{command}: no run {run_id!r} in {stores.redact(uri)}") from None
    return client, run, uri


def _download(client: Any, run_id: str, path: str, dst: str) -> Path | None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return Path(client.download_artifacts(run_id, path, dst))
    except Exception:
        return None


# ----------------------------------------------------------------------------- the config


def _split_overrides(overrides: list[str]) -> tuple[set[str], set[str]]:
    """The config groups an override list picks (``data=csv``) and the keys it sets (``data.path``)."""
    from rnnlab.composition import USER_GROUPS

    groups: set[str] = set()
    keys: set[str] = set()
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        (groups if key in USER_GROUPS else keys).add(key)
    return groups, keys


def _choices(logged: DictConfig, skip: set[str]) -> list[str]:
    """The group choices that compose the schemas ``logged`` (a resolved config) was made of."""
    from rnnlab import schemas

    out = []
    for group in ("backbone", "data"):
        if group not in skip and logged.get(group) is not None:
            out.append(f"{group}={logged[group].name}")
    for group in ("regularizer", "baseline"):
        if group not in skip:
            out.append(f"{group}=[{','.join(str(k) for k in (logged.get(group) or {}))}]")
    for group, options in (("optimizer", schemas.OPTIMIZERS), ("scheduler", schemas.SCHEDULERS)):
        if group in skip:
            continue
        node = logged.get(group)
        if node is None:  # none chosen: conf/train.yaml chooses none either
            continue
        # the option whose _target_ the run used: torch's class, named by the schema
        name = next((n for n, s in options.items() if getattr(s, "_target_", None) == node.get("_target_")), None)
        if name is not None:
            out.append(f"{group}={name}")
    return out


def _without(node: Any, dotted: str) -> None:
    """Delete the key ``dotted`` (``data.path``) from the plain container ``node``, if there."""
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def config_of(logged_yaml: str, overrides: list[str], run_id: str, command: str) -> DictConfig:
    """The run's resolved config (its config.yaml text) on its schemas, with ``overrides`` on top."""
    from rnnlab.composition import compose, explain

    logged = OmegaConf.create(logged_yaml)
    assert isinstance(logged, DictConfig)
    groups, keys = _split_overrides(overrides)
    plain = cast(dict[str, Any], OmegaConf.to_container(logged))
    for key in ("trial", "resume", "output_dir"):  # how it ran, not what it is
        plain.pop(key, None)
    for group in groups:
        old = plain.pop(group, None)
        if group == "data" and isinstance(old, dict):
            plain["_old_data"] = old  # kept below for the keys the new data schema shares
    for key in keys:
        _without(plain, key)
    choices = _choices(logged, groups)
    for group in ("optimizer", "scheduler"):  # a _target_ no option names: the schema's default stays
        if group not in groups and plain.get(group) is not None and not any(c.startswith(f"{group}=") for c in choices):
            plain.pop(group, None)
    old_data = plain.pop("_old_data", None)
    try:
        cfg = compose([*choices, *overrides])
        if old_data is not None:  # settings the new data module shares with the old (window, horizon, ...)
            shared = {k: v for k, v in old_data.items() if k in cfg.data and k != "name" and f"data.{k}" not in keys}
            shared = {k: v for k, v in shared.items() if not _is_source(k)}
            plain["data"] = shared
        merged = OmegaConf.merge(cfg, plain)
    except Exception as e:
        raise RnnlabError(f"{command}: {explain(e, overrides)}") from None
    assert isinstance(merged, DictConfig)
    return merged


# Data settings that name where the data comes from: never carried over to another data module.
_SOURCES = ("path", "dataset", "target", "features", "sort_by", "delimiter", "city", "columns")


def _is_source(key: str) -> bool:
    return key in _SOURCES


# ----------------------------------------------------------------------------- the run, rebuilt


@dataclass
class LoggedRun:
    """A run rebuilt: ``cfg`` (validated), ``dm`` (set up), ``model`` (a SequenceModel, eval mode,
    its trained weights), and where the weights came from (``source``, a line for the user)."""

    run: Any
    client: Any
    uri: str
    cfg: DictConfig
    dm: Any
    model: Any
    source: str
    overrides: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)

    @property
    def net(self) -> Any:
        return self.model.net

    def describe(self) -> str:
        """What was used, in one line: the run, its model's weights and its config."""
        name = self.run.info.run_name or self.run_id[:8]
        config = "its config.yaml" + (f" with {' '.join(self.overrides)}" if self.overrides else "")
        return f"run {self.run_id} ({name}); model {self.source}; config: {config}"


def load(run_id: str, tracking_uri: str, overrides: list[str] | None = None, command: str = "evaluate") -> LoggedRun:
    """Rebuild run ``run_id``: config, data module (set up), model with its trained weights."""
    import torch

    from rnnlab.train import build

    overrides = list(overrides or [])
    client, run, uri = find_run(run_id, tracking_uri, command)
    with tempfile.TemporaryDirectory() as tmp:
        path = _download(client, run_id, "config.yaml", tmp)
        if path is None:
            raise RnnlabError(f"{command}: run {run_id[:8]} logged no config.yaml (it did not get past its start)")
        cfg = config_of(path.read_text(), overrides, run_id, command)
        ckpt = _download(client, run_id, CHECKPOINT, tmp)
        model_id = _logged_model(run)
        if ckpt is None:
            pickled = (
                f"; its MLflow model loads in Python: mlflow.pytorch.load_model('models:/{model_id}')"
                if model_id
                else ""
            )
            raise RnnlabError(
                f"{command}: run {run_id[:8]} has no model: it logged no {CHECKPOINT} (status {run.info.status}; "
                f"logger.log_checkpoint was off, or it failed before its test){pickled}"
            )
        OmegaConf.update(cfg, "logger.tracking_uri", uri)
        try:
            import pytorch_lightning as pl

            pl.seed_everything(int(cfg.seed), workers=True, verbose=False)  # as train() before build()
            dm, model = build(cfg)
        except RnnlabError as e:
            raise RnnlabError(f"{command}: {e}") from None
        raw = ckpt.read_bytes()
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    info = f"epoch {state.get('epoch', '?')}, step {state.get('global_step', '?')}"
    source = f"{CHECKPOINT} ({info}, sha256 {hashlib.sha256(raw).hexdigest()[:12]}), loaded weights-only"
    weights = state["state_dict"]
    if model_id is not None:
        source += f"; its MLflow model: {model_id}"
    versions = _registered_versions(client, run_id)
    if versions:
        source += f", registered as {versions}"
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e).splitlines()[0])
        raise RnnlabError(
            f"{command}: the model of run {run_id[:8]} does not fit this data"
            + (f" ({' '.join(overrides)})" if overrides else "")
            + f": {detail.rstrip('.')}"
        ) from None
    model.eval()
    _scale_to(model.net, dm.task())
    return LoggedRun(run, client, uri, cfg, dm, model, source, overrides)


def _scale_to(net: Any, task: Any) -> None:
    """The net's output scaling set to the data's (fitted on its training part, as its inputs are
    scaled): the same values for the run's own data, the evaluated data's for another."""
    import torch

    if task.target_scale is not None and len(task.target_scale) == len(net.target_scale):
        net.target_scale.copy_(torch.tensor(task.target_scale))
        net.target_shift.copy_(torch.tensor(task.target_shift))


def _logged_model(run: Any) -> str | None:
    """The id of the MLflow model the run logged (``models:/<id>``), if any."""
    outputs = getattr(getattr(run, "outputs", None), "model_outputs", None) or []
    return str(outputs[-1].model_id) if outputs else None


def _registered_versions(client: Any, run_id: str) -> str:
    """``name vN`` of every model registry version made from this run, comma-separated, or ''."""
    try:
        found = client.search_model_versions(f"run_id='{run_id}'")
    except Exception:
        return ""
    return ", ".join(f"{v.name} v{v.version}" for v in found)
