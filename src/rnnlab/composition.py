"""Composing rnnlab's config with Hydra: the schemas as group options, the search path, ``compose``,
and turning Hydra's errors into one line naming the key. No torch here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnlab import schemas
from rnnlab.errors import ConfigError, first_line
from rnnlab.registry import REGISTRIES

CONFIG_MODULE = "rnnlab.conf"
CONFIG_NAME = "train"
# Groups a user picks from; the schema groups (``schema/...``) are internal.
USER_GROUPS = (
    "backbone",
    "data",
    "regularizer",
    "baseline",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "experiment",
    "sweep",
    "launcher",
)

_registered = False


def register_schemas() -> None:
    """Store every typed schema in Hydra's ConfigStore as its config group's option (idempotent).

    The schema is the one home of a plugin's defaults: ``backbone=gru`` selects ``GRUConfig`` itself,
    so a plugin needs no YAML, and Hydra checks every value and override against the dataclass.
    Regularizers and baselines go to the package ``<kind>.<name>``, so ``regularizer=[a,b]`` composes a dict.
    """
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="rnnlab_train_schema", node=schemas.TrainConfig, provider="rnnlab")
    for kind, registry in REGISTRIES.items():
        for name in registry.names():
            package = f"{kind}.{name}" if registry.many else None
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
        return f"cannot parse override {exc.override!r}: {first_line(exc.message)}"
    m = re.search(r"Could not (?:load|find) '([^']+)/([^'/]+)'", str(exc))
    if m:
        group, name = m.groups()
        return str(ConfigError(group, f"unknown {group} {name!r}", list_groups().get(group)))
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, OmegaConfBaseException):
        return _explain_omegaconf(cause, str(exc), overrides)
    if isinstance(exc, OmegaConfBaseException):
        return _explain_omegaconf(exc, "", overrides)
    return first_line(str(exc))


def _explain_omegaconf(exc: OmegaConfBaseException, outer: str, overrides: Sequence[str]) -> str:
    key = getattr(exc, "full_key", None) or ""
    msg = first_line(str(getattr(exc, "msg", None) or exc))
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
