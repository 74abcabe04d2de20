"""Validating a composed config: plugin names, keys, finite numbers, mandatory values, ranges (the
schemas' ``__post_init__``) and the metric ``monitor`` names, converted once into the schema objects
that ``Registry.build`` takes. No torch here."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnlab.errors import ConfigError, first_line
from rnnlab.registry import REGISTRIES

# ----------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Validated:
    """A composed config turned into its schema objects: the one conversion on the way to a run."""

    config: Any  # the TrainConfig instance (plugins as their schema dataclasses)
    backbone: Any
    data: Any
    regularizers: tuple[Any, ...]
    baselines: dict[str, Any]


def _locate(node: Any, path: str) -> ConfigError | None:
    """The first failing node's error with its dotted path (children first); only on the error path."""
    if not isinstance(node, DictConfig):
        return None
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            found = _locate(child, f"{path}.{key!s}" if path else str(key))
            if found is not None:
                return found
    if OmegaConf.get_type(node) not in (dict, None):
        try:
            OmegaConf.to_object(node)
        except ConfigError as e:
            return e.with_prefix(path)
    return None


def validate(cfg: DictConfig) -> Validated:
    """Check every plugin name against its registry and every value against its schema, and return
    the schema objects (``Registry.build`` takes them as they are). Raises ConfigError naming the key."""
    for kind, registry in REGISTRIES.items():
        if registry.many:
            for key, node in (cfg.get(kind) or {}).items():
                _check_plugin(registry, node, f"{kind}.{key}")
        elif cfg.get(kind) is not None:
            _check_plugin(registry, cfg[kind], kind)
    _check_keys(cfg, "")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(missing[0], f"missing mandatory value; set it: {missing[0]}=...")
    try:
        obj = OmegaConf.to_object(cfg)
    except ConfigError as e:
        raise (_locate(cfg, "") or e) from None
    except OmegaConfBaseException as e:
        raise ConfigError(getattr(e, "full_key", "") or "", first_line(str(getattr(e, "msg", None) or e))) from None
    validated = Validated(
        config=obj,
        backbone=getattr(obj, "backbone", None),
        data=getattr(obj, "data", None),
        regularizers=tuple((getattr(obj, "regularizer", None) or {}).values()),
        baselines=dict(getattr(obj, "baseline", None) or {}),
    )
    _check_monitor(validated)
    return validated


def _check_keys(node: Any, path: str) -> None:
    """Every key is a field of its schema (``+key=`` cannot add one) and every number is finite."""
    if isinstance(node, DictConfig):
        typ = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(typ):
            allowed = {f.name for f in dataclasses.fields(typ)}
            for key in node:
                if key not in allowed:
                    name = f"{path}.{key!s}" if path else str(key)
                    raise ConfigError(name, "unknown key", sorted(allowed), label="valid keys")
        for key in node:
            _check_keys(node._get_node(key), f"{path}.{key!s}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            _check_keys(node._get_node(i), f"{path}[{i}]")
    elif not node._is_missing() and not node._is_interpolation():
        value = node._value()
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(path, f"must be a finite number, got {value}")


def monitors(validated: Validated) -> list[str]:
    """The metrics ``monitor`` may name: what the task logs after each validation epoch."""
    metrics = validated.data.metrics() if hasattr(validated.data, "metrics") else ("loss",)
    return [f"val/{m}" for m in metrics] + ["train/loss"]


def returned_metrics(validated: Validated) -> list[str]:
    """The keys of the dict ``train()`` returns (what a sweep's ``objective`` may name)."""
    metrics = validated.data.metrics() if hasattr(validated.data, "metrics") else ("loss",)
    scores = validated.data.scores() if hasattr(validated.data, "scores") else ()
    return sorted(
        {f"test/{m}" for m in (*metrics, *scores)}
        | {f"baseline/{b}test/{m}" for m in scores for b in ("", *(f"{n}/" for n in validated.baselines))}
        | {validated.config.monitor, "epochs", "train_seconds"}
    )


def _check_monitor(validated: Validated) -> None:
    cfg = validated.config
    if validated.data is None or not hasattr(cfg, "monitor"):
        return
    valid = monitors(validated)
    if cfg.monitor not in valid:
        raise ConfigError("monitor", f"{validated.data.name!r} does not log {cfg.monitor!r}", valid)
    sched_monitor = getattr(getattr(cfg, "scheduler", None), "monitor", None)
    if sched_monitor is not None and sched_monitor not in valid:
        raise ConfigError("scheduler.monitor", f"{validated.data.name!r} does not log {sched_monitor!r}", valid)


def _check_plugin(registry: Any, node: Any, path: str) -> None:
    if not isinstance(node, DictConfig) or "name" not in node:
        raise ConfigError(path, f"expected a {registry.kind} config with a 'name'", registry.names())
    name = node.name
    if name not in registry.names():
        raise ConfigError(path, f"unknown {registry.kind} {name!r}", registry.names())
    expected = registry.schema(name)
    if OmegaConf.get_type(node) is not expected:
        raise ConfigError(
            f"{path}.name",
            f"{name!r} does not match the config's schema "
            f"{getattr(OmegaConf.get_type(node), '__name__', 'dict')}; pick it with "
            f"{registry.kind}={name}",
        )
