"""Config composition and validation, shared by the CLI, ``train()`` and tests. No torch here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
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
    """Store every typed schema in Hydra's ConfigStore (idempotent).

    Each YAML in ``conf/<group>/`` starts with ``defaults: [/schema/<group>/<name>@_here_, _self_]``,
    so Hydra checks its values - and every command-line override - against the dataclass.
    """
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="rnnlab_train_schema", node=schemas.TrainConfig)
    for kind, registry in REGISTRIES.items():
        for name in registry.names():
            cs.store(group=f"schema/{kind}", name=name, node=registry.schema(name))
    for name, node in schemas.OPTIMIZERS.items():
        cs.store(group="schema/optimizer", name=name, node=node)
    for name, node in schemas.SCHEDULERS.items():
        cs.store(group="schema/scheduler", name=name, node=node)
    _registered = True


def compose(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """Compose ``conf/train.yaml`` with overrides, as ``python -m rnnlab`` would (for Python and tests)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=return_hydra_config)


def group_options(group: str) -> list[str]:
    """The YAML options of a config group (needs an initialized Hydra; see ``list_groups``)."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    return sorted(loader.get_group_options(group))


def list_groups() -> dict[str, list[str]]:
    """Every user-facing config group and its options."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return {g: group_options(g) for g in USER_GROUPS}


# ----------------------------------------------------------------------------- validation


def _to_object(node: Any, path: str) -> Any:
    """Instantiate ``node``'s dataclass (running its ``__post_init__`` checks), children first."""
    if isinstance(node, DictConfig):
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                _to_object(child, f"{path}.{key!s}" if path else str(key))
        if OmegaConf.get_type(node) not in (dict, None):
            try:
                return OmegaConf.to_object(node)
            except ConfigError as e:
                raise e.with_prefix(path) from None
    return node


def validate(cfg: DictConfig) -> None:
    """Check every value against its schema's ranges and every plugin name against its registry."""
    for kind, registry in REGISTRIES.items():
        if kind == "regularizer":
            for key, node in (cfg.get("regularizer") or {}).items():
                _check_plugin(registry, node, f"regularizer.{key}")
        elif cfg.get(kind) is not None:
            _check_plugin(registry, cfg[kind], kind)
    _to_object(cfg, "")


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


def explain(exc: BaseException) -> str:
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
        return _explain_omegaconf(cause, str(exc))
    if isinstance(exc, OmegaConfBaseException):
        return _explain_omegaconf(exc, "")
    return _first_line(str(exc))


def _explain_omegaconf(exc: OmegaConfBaseException, outer: str) -> str:
    key = getattr(exc, "full_key", None) or ""
    msg = _first_line(str(getattr(exc, "msg", None) or exc))
    m = re.search(r"Key '([^']+)' (?:is )?not in struct", str(exc)) or re.search(r"Could not override '([^']+)'", outer)
    if m or "not in struct" in str(exc) or "ConfigKeyError" in type(exc).__name__:
        key = key or (m.group(1) if m else "")
        parent = key.rpartition(".")[0]
        return str(ConfigError(key, "unknown key", _keys_at(parent), label="valid keys"))
    return str(ConfigError(key, msg)) if key else msg


def _keys_at(parent: str) -> list[str]:
    """The keys a user may set under ``parent`` in the default config (for 'unknown key' errors)."""
    try:
        cfg = compose([])
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return [str(k) for k in node] if isinstance(node, DictConfig) else []
    except Exception:
        return []


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
