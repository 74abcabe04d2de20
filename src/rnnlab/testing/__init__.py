"""Contract checks for plugin authors: call them from your own tests.

Each check builds the plugin from its schema the way a run does (``Impl(**schema.kwargs(), ...)``
through a :class:`rnnlab.registry.Registry`), exercises the interface rnnlab relies on and raises
``AssertionError`` with a message naming the plugin and what is wrong. No pytest needed::

    from rnnlab.testing import check_plugin
    from my_pkg.config import MyRNNConfig, SunspotsConfig

    def test_my_rnn():
        check_plugin("backbone", MyRNNConfig(hidden_size=8))

    def test_sunspots():
        check_plugin("data", SunspotsConfig())

- :func:`check_config_round_trip`: the schema is a valid typed config (``OmegaConf.structured``
  -> ``to_object`` gives it back), every field has a default or is ``MISSING``, ``impl`` imports,
  and the constructor takes every field with no default of its own (the schema is the one home).
- :func:`check_backbone`: shapes, final state, backward, eval determinism, state hand-over,
  variable lengths, per-layer outputs, the regularizer hooks it declares, ``state_dict`` reload.
- :func:`check_regularizer`: its hooks keep shapes, its penalty is a finite differentiable scalar,
  and it trains inside a real ``SequenceNet`` on a reference backbone that calls every hook.
- :func:`check_data_module`: ``task()`` agrees with the splits and the batches, batches are
  reproducible from the seed, and ``schema.metrics()`` only names metrics the task reports.
- :func:`check_baseline`: on a reference series (or yours), predictions of the test targets' shape,
  finite, and made from the past only: changing the series from a test origin on changes no
  forecast made before it.

torch is imported here; Lightning only by the checks that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rnnlab.testing._backbones import check_backbone
from rnnlab.testing._baselines import ReferenceSeries, check_baseline
from rnnlab.testing._config import build, check_config_round_trip
from rnnlab.testing._data import check_data_module
from rnnlab.testing._regularizers import ReferenceBackbone, check_regularizer

__all__ = [
    "CHECKS",
    "ReferenceBackbone",
    "ReferenceSeries",
    "build",
    "check_backbone",
    "check_baseline",
    "check_config_round_trip",
    "check_data_module",
    "check_plugin",
    "check_regularizer",
]


CHECKS: dict[str, Callable[..., Any]] = {
    "backbone": check_backbone,
    "data": check_data_module,
    "regularizer": check_regularizer,
    "baseline": check_baseline,
}


def check_plugin(kind: str, schema: Any, **kwargs: Any) -> Any:
    """``check_config_round_trip`` then the check for ``kind`` (``backbone``, ``data``,
    ``regularizer``, ``baseline``; the keys of ``rnnlab.registry.REGISTRIES``); returns the built plugin."""
    if kind not in CHECKS:
        raise ValueError(f"unknown plugin kind {kind!r}; valid: {', '.join(CHECKS)}")
    check_config_round_trip(schema)
    return CHECKS[kind](schema, **kwargs)
