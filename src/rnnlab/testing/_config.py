"""Building a plugin from its schema, and the schema's own contract."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

from omegaconf import MISSING, OmegaConf
from torch import nn

from rnnlab.registry import Registry
from rnnlab.schemas import PluginConfig

_ATOL = 1e-5


# ----------------------------------------------------------------------------- building


def _instance(schema: Any) -> PluginConfig:
    """A schema class -> its default instance; an instance as it is."""
    obj = schema() if isinstance(schema, type) else schema
    assert isinstance(obj, PluginConfig), (
        f"{type(obj).__name__} is not a plugin schema: subclass rnnlab.schemas.PluginConfig"
    )
    return obj


def _label(config: PluginConfig) -> str:
    return f"{type(config).__name__} ({config.name!r}, impl {type(config).impl!r})"


def build(kind: str, schema: Any, **context: Any) -> Any:
    """Build a plugin as a run does: a throwaway ``Registry`` holding only ``schema``, then
    ``Registry.build`` -> ``Impl(**schema.kwargs(), **context)``. ``schema``: class or instance."""
    config = _instance(schema)
    registry = Registry(kind, "rnnlab.testing.none")  # an entry-point group nothing declares
    registry.register(config.name, type(config))
    return registry.build(config, **context)


# ----------------------------------------------------------------------------- config


def _impl_class(schema_cls: type) -> type:
    path = getattr(schema_cls, "impl", "")
    module, sep, attr = str(path).partition(":")
    assert sep and module and attr, f"{schema_cls.__name__}.impl must be 'module:Class', got {path!r}"
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise AssertionError(f"{schema_cls.__name__}.impl {path!r} does not import: {e}") from e
    assert isinstance(cls, type), f"{schema_cls.__name__}.impl {path!r} is not a class"
    return cls


def _constructor_params(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """Keyword parameters of ``cls.__init__`` and its bases while they pass ``**kwargs`` on;
    and whether the chain ends in ``**kwargs`` (which then accepts anything)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass in (nn.Module, object):
            continue
        sig = inspect.signature(vars(klass)["__init__"])
        for p in list(sig.parameters.values())[1:]:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return params, False
    return params, True


def check_config_round_trip(schema: Any) -> None:
    """The schema is a valid typed config and its ``impl`` is a class that takes its fields.

    ``schema``: the class, or an instance (needed when a field is ``MISSING``: the instance's
    values are then round-tripped).
    """
    cls = schema if isinstance(schema, type) else type(schema)
    assert dataclasses.is_dataclass(cls) and issubclass(cls, PluginConfig), (
        f"{cls.__name__} must be a @dataclass subclassing rnnlab.schemas.PluginConfig"
    )
    all_fields = dataclasses.fields(cls)
    name_field = next(f for f in all_fields if f.name == "name")
    assert isinstance(name_field.default, str) and name_field.default not in ("", MISSING), (
        f"{cls.__name__}.name must default to the registry name (e.g. name: str = 'my_rnn')"
    )
    missing: list[str] = []
    for f in dataclasses.fields(cls):
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert not no_default, (
            f"{cls.__name__}.{f.name} has no default: give it one, or `= MISSING` (omegaconf) for a value "
            "the user must set"
        )
        if f.default == MISSING:
            missing.append(f.name)
    try:
        node = OmegaConf.structured(cls)
    except Exception as e:
        raise AssertionError(f"{cls.__name__} is not a valid OmegaConf structured config: {e}") from e
    assert sorted(OmegaConf.missing_keys(node)) == sorted(missing), (
        f"{cls.__name__}: MISSING fields {sorted(missing)} but OmegaConf sees {sorted(OmegaConf.missing_keys(node))}"
    )
    instance = schema if not isinstance(schema, type) else (None if missing else cls())
    if instance is not None:
        back = OmegaConf.to_object(OmegaConf.structured(instance))
        assert back == instance, f"{cls.__name__}: OmegaConf round trip changed the config: {instance} -> {back}"
        assert type(back) is cls, f"{cls.__name__}: OmegaConf round trip gave a {type(back).__name__}"

    impl = _impl_class(cls)
    params, open_ended = _constructor_params(impl)
    fields = {f.name: f for f in all_fields if f.name != "name"}
    unknown = sorted(set(fields) - set(params))
    assert open_ended or not unknown, (
        f"{impl.__name__}.__init__ does not take schema field(s) {unknown} of {cls.__name__}; "
        "every field but `name` is passed as a keyword argument"
    )
    for fname, f in fields.items():
        p = params.get(fname)
        if p is None or p.default is inspect.Parameter.empty:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        raise AssertionError(
            f"{impl.__name__}.__init__ defaults {fname}={p.default!r} ({cls.__name__} says {default!r}): "
            "defaults live in the schema only; drop the constructor's"
        )
