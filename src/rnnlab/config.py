"""Config composition and validation, shared by the CLI, ``train()`` and tests. No torch here."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnlab import schemas
from rnnlab.errors import ConfigError
from rnnlab.registry import REGISTRIES

CONFIG_MODULE = "rnnlab.conf"
CONFIG_NAME = "train"
# Groups a user picks from; the schema groups (``schema/...``) are internal.
USER_GROUPS = (
    "backbone",
    "data",
    "regularizer",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "experiment",
    "sweep",
)

_registered = False


def register_schemas() -> None:
    """Store every typed schema in Hydra's ConfigStore as its config group's option (idempotent).

    The schema is the one home of a plugin's defaults: ``backbone=gru`` selects ``GRUConfig`` itself,
    so a plugin needs no YAML, and Hydra checks every value and override against the dataclass.
    Regularizers go to the package ``regularizer.<name>``, so ``regularizer=[a,b]`` composes a dict.
    """
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="rnnlab_train_schema", node=schemas.TrainConfig, provider="rnnlab")
    for kind, registry in REGISTRIES.items():
        for name in registry.names():
            package = f"{kind}.{name}" if kind == "regularizer" else None
            cs.store(group=kind, name=name, node=registry.schema(name), package=package, provider="rnnlab")
    for group, options in (
        ("optimizer", schemas.OPTIMIZERS),
        ("scheduler", schemas.SCHEDULERS),
        ("trainer", {"default": schemas.TrainerConfig}),
        ("logger", {"mlflow": schemas.LoggerConfig}),
    ):
        for name, node in options.items():
            cs.store(group=group, name=name, node=node, provider="rnnlab")
    _registered = True


class Composer:
    """Composes the app's config many times under one Hydra initialization (the CLI's checks).

    The search path is built as ``python -m rnnlab`` builds it: ``pkg://rnnlab.conf``, the search
    path plugins (installed packages' presets), and ``--config-dir`` before the schemas, so a primary
    config in that directory (``--config-name best``) is found as Hydra would find it.
    """

    def __init__(self, config_name: str = CONFIG_NAME, config_dir: str | None = None) -> None:
        self.config_name = config_name
        self.config_dir = config_dir

    def __enter__(self) -> Composer:
        from pathlib import Path

        from hydra import version
        from hydra._internal.hydra import Hydra
        from hydra._internal.utils import create_config_search_path
        from hydra.core.config_search_path import SearchPathQuery
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.utils import setup_globals

        register_schemas()
        version.setbase("1.3")
        setup_globals()
        search_path = create_config_search_path(f"pkg://{CONFIG_MODULE}")
        if self.config_dir is not None:
            path = Path(self.config_dir).expanduser().resolve()
            if not path.is_dir():
                raise ConfigError("--config-dir", f"directory not found: {str(path)!r}")
            search_path.prepend("command-line", f"file://{path}", anchor=SearchPathQuery(provider="schema"))
        GlobalHydra.instance().clear()
        Hydra.create_main_hydra2(task_name="rnnlab", config_search_path=search_path)
        return self

    def __exit__(self, *exc: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()

    def __call__(self, overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
        from hydra import compose as hydra_compose

        return hydra_compose(
            self.config_name,
            overrides=list(overrides),
            return_hydra_config=return_hydra_config,
        )

    def group_options(self, group: str) -> list[str]:
        from hydra.core.global_hydra import GlobalHydra

        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def compose(
    overrides: Sequence[str] = (),
    *,
    return_hydra_config: bool = False,
    config_name: str = CONFIG_NAME,
    config_dir: str | None = None,
) -> DictConfig:
    """Compose ``conf/train.yaml`` with overrides, as ``python -m rnnlab`` would (for Python and tests)."""
    with Composer(config_name, config_dir) as composer:
        return composer(overrides, return_hydra_config=return_hydra_config)


def list_groups() -> dict[str, list[str]]:
    """Every user-facing config group and its options: the registered schemas, the shipped presets and
    those of installed packages (entry points ``rnnlab.conf``)."""
    with Composer() as composer:
        return {g: composer.group_options(g) for g in USER_GROUPS}


# ----------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Validated:
    """A composed config turned into its schema objects: the one conversion on the way to a run."""

    config: Any  # the TrainConfig instance (plugins as their schema dataclasses)
    backbone: Any
    data: Any
    regularizers: tuple[Any, ...]


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
        if kind == "regularizer":
            for key, node in (cfg.get("regularizer") or {}).items():
                _check_plugin(registry, node, f"regularizer.{key}")
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
        raise ConfigError(getattr(e, "full_key", "") or "", _first_line(str(getattr(e, "msg", None) or e))) from None
    validated = Validated(
        config=obj,
        backbone=getattr(obj, "backbone", None),
        data=getattr(obj, "data", None),
        regularizers=tuple((getattr(obj, "regularizer", None) or {}).values()),
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
    return sorted(
        {f"test/{m}" for m in metrics}
        | {f"baseline/test/{m}" for m in metrics if m != "loss"}
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


# ----------------------------------------------------------------------------- errors


def explain(exc: BaseException, overrides: Sequence[str] = ()) -> str:
    """Turn a Hydra / OmegaConf composition error into one line naming the key and the choices."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, MissingConfigException):
        group, _, name = (exc.missing_cfg_file or "").rpartition("/")
        if group and exc.options is not None:
            return str(ConfigError(group, f"unknown {group} {name!r}", exc.options))
    if isinstance(exc, OverrideParseException):
        return f"cannot parse override {exc.override!r}: {_first_line(exc.message)}"
    m = re.search(r"Could not (?:load|find) '([^']+)/([^'/]+)'", str(exc))
    if m:
        group, name = m.groups()
        return str(ConfigError(group, f"unknown {group} {name!r}", list_groups().get(group)))
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, OmegaConfBaseException):
        return _explain_omegaconf(cause, str(exc), overrides)
    if isinstance(exc, OmegaConfBaseException):
        return _explain_omegaconf(exc, "", overrides)
    return _first_line(str(exc))


def _explain_omegaconf(exc: OmegaConfBaseException, outer: str, overrides: Sequence[str]) -> str:
    key = getattr(exc, "full_key", None) or ""
    msg = _first_line(str(getattr(exc, "msg", None) or exc))
    m = re.search(r"Key '([^']+)' (?:is )?not in struct", str(exc)) or re.search(r"Could not override '([^']+)'", outer)
    if m or "not in struct" in str(exc) or "ConfigKeyError" in type(exc).__name__:
        key = key or (m.group(1) if m else "")
        parent = key.rpartition(".")[0]
        return str(ConfigError(key, "unknown key", _keys_at(parent, overrides, key), label="valid keys"))
    return str(ConfigError(key, msg)) if key else msg


def _keys_at(parent: str, overrides: Sequence[str], bad_key: str) -> list[str]:
    """The keys a user may set under ``parent`` in the config the other overrides select (so the
    keys of the backbone picked on the command line, not of the default one)."""
    others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != bad_key]
    try:
        cfg = compose(others)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return [str(k) for k in node] if isinstance(node, DictConfig) else []
    except Exception:
        return []


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
