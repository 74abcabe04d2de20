"""Plugin registries filled from Python entry points.

A plugin is a typed config dataclass (its schema) whose ``impl`` class attribute names the
implementation as ``"module:Class"``. The entry point names the schema, so listing plugins and
composing configs never imports torch; ``create`` imports the implementation only when a run
needs it::

    [project.entry-points."rnnlab.backbones"]
    gru = "rnnlab_plugins.backbones.config:GRUConfig"
"""

from __future__ import annotations

import dataclasses
import importlib
from importlib.metadata import entry_points
from typing import Any

from rnnlab.errors import ConfigError


class Registry:
    """Name -> schema for one plugin kind (``backbone``, ``data``, ``regularizer``, ``baseline``)."""

    def __init__(self, kind: str, group: str, *, many: bool = False) -> None:
        self.kind = kind  # also the Hydra config group: conf/<kind>/<name>.yaml
        self.group = group  # entry-point group
        # many: a run takes a list of them (``regularizer=[a,b]``), composed into a dict by name
        self.many = many
        self._schemas: dict[str, type] | None = None

    def _entries(self) -> dict[str, type]:
        if self._schemas is None:
            self._schemas = {}
            for ep in entry_points(group=self.group):
                self.register(ep.name, ep.load())
        return self._schemas

    def register(self, name: str, schema: type) -> type:
        """Add a plugin; usable as a decorator on a config dataclass: ``@backbones.register("gru")``."""
        if not dataclasses.is_dataclass(schema) or not isinstance(getattr(schema, "impl", None), str):
            raise TypeError(f"{self.kind} plugin {name!r}: schema must be a dataclass with an 'impl' string")
        schemas = self._schemas if self._schemas is not None else self._entries()
        schemas[name] = schema
        return schema

    def names(self) -> list[str]:
        return sorted(self._entries())

    def schema(self, name: str) -> type:
        try:
            return self._entries()[name]
        except KeyError:
            raise ConfigError(self.kind, f"unknown {self.kind} {name!r}", self.names()) from None

    def impl_path(self, name: str) -> str:
        """``"module:Class"`` of the implementation (the schema's ``impl``), without importing it."""
        return str(getattr(self.schema(name), "impl"))  # noqa: B009 - a ClassVar mypy cannot see on `type`

    def impl(self, name: str) -> type:
        """The implementation class, imported on first use."""
        module, _, attr = self.impl_path(name).partition(":")
        return getattr(importlib.import_module(module), attr)

    def create(self, name: str, **kwargs: Any) -> Any:
        """For Python and tests: the schema's fields among ``kwargs`` go through the schema (checked,
        the rest defaulted), the others (``input_size=``, ``shuffle_seed=``) to the constructor.
        Runs use ``build`` on the validated schema object."""
        schema = self.schema(name)
        fields = {f.name for f in dataclasses.fields(schema)}
        options = {k: v for k, v in kwargs.items() if k in fields}
        context = {k: v for k, v in kwargs.items() if k not in fields}
        return self.build(schema(**options), **context)

    def build(self, config: Any, **context: Any) -> Any:
        """The plugin a validated schema instance describes: ``impl(**config.kwargs(), **context)``.

        ``context`` is what the run supplies, not the user: ``input_size=`` for a backbone,
        ``shuffle_seed=`` for a data module (see the base classes' docstrings).
        """
        return self.impl(config.name)(**config.kwargs(), **context)


backbones = Registry("backbone", "rnnlab.backbones")
data_modules = Registry("data", "rnnlab.data")
regularizers = Registry("regularizer", "rnnlab.regularizers", many=True)
baselines = Registry("baseline", "rnnlab.baselines", many=True)

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (backbones, data_modules, regularizers, baselines)}
