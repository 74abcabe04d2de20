"""The search space: Hydra sweep expressions, the deprecated ``search_space`` dict and
``custom_search_space``, read as hydra-optuna-sweeper 1.2 read them (distributions translated to
Optuna 4's Int/Float/CategoricalDistribution)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from rnnlab.errors import ConfigError

from .config import KEY

log = logging.getLogger(__name__)

EXPRESSIONS = ["choice", "interval", "range", "shuffle(range)", "tag(log, ...)"]
DISTRIBUTION_TYPES = ("categorical", "float", "int")
DISTRIBUTION_KEYS = ("type", "choices", "low", "high", "log", "step")


def format_value(value: Any) -> str:
    """A sampled value as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def one_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[-1] if lines else type(e).__name__


def distribution_from_override(override: Override, key: str) -> BaseDistribution | None:
    """An Optuna distribution for a sweep override; None for a fixed value.

    ``choice(a, b)`` / ``a,b`` / ``shuffle(range(...))`` -> categorical; ``range(start, stop, step)``
    -> int (float if any bound is a float) with a step, ``stop`` included as in hydra-optuna-sweeper;
    ``interval(low, high)`` -> float, int if both ends are ints (``int(interval(...))``);
    ``tag(log, interval(...))`` -> log scale.
    """
    if not override.is_sweep_override():
        return None
    value = override.value()
    try:
        if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
            choices = list(override.sweep_iterator(transformer=Transformer.encode))
            if not choices:
                raise ConfigError(key, "empty choice()")
            for c in choices:
                if not isinstance(c, (str, int, float, bool, type(None))):
                    raise ConfigError(key, f"choice values must be str, int, float, bool or null, got {c!r}")
            return CategoricalDistribution(choices)  # type: ignore[arg-type]
        if isinstance(value, RangeSweep):
            start, stop, step = value.start, value.stop, value.step
            assert start is not None and stop is not None
            if step <= 0:
                raise ConfigError(key, f"range() needs a positive step (stop is included): {override.input_line!r}")
            if stop < start:
                raise ConfigError(key, f"empty range({start}, {stop}, {step})")
            if any(isinstance(v, float) for v in (start, stop, step)):
                return FloatDistribution(float(start), float(stop), step=float(step))
            return IntDistribution(int(start), int(stop), step=int(step))
        if isinstance(value, IntervalSweep):
            assert value.start is not None and value.end is not None
            unknown = set(value.tags) - {"log"}
            if unknown:
                raise ConfigError(key, f"unknown tag {sorted(unknown)[0]!r}", ["log"])
            log_scale = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log_scale)
            return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    except ValueError as e:  # Optuna's own checks: low > high, log scale with low <= 0, ...
        raise ConfigError(key, f"bad search space {override.input_line!r}: {e}") from None
    kind = override.value_type.name if override.value_type else "?"
    raise ConfigError(key, f"sweep type {kind} is not supported", EXPRESSIONS)


def distribution_from_config(conf: Mapping[str, Any], key: str) -> BaseDistribution:
    """One entry of the deprecated ``search_space`` dict: ``{type, low, high, step, log, choices}``.

    As hydra-optuna-sweeper: int -> int(low)..int(high), step 1 unless given, ``log`` ignores the
    step; float -> log, else stepped if ``step``, else uniform; categorical -> ``choices``.
    """
    if not isinstance(conf, Mapping):
        raise ConfigError(key, f"expected a dict with 'type', got {conf!r}")
    for k in conf:
        if k not in DISTRIBUTION_KEYS:
            raise ConfigError(f"{key}.{k}", "not a key of a search_space entry", DISTRIBUTION_KEYS)
    kind, low, high, step = conf.get("type"), conf.get("low"), conf.get("high"), conf.get("step")
    log_scale = bool(conf.get("log", False))
    if kind not in DISTRIBUTION_TYPES:
        raise ConfigError(f"{key}.type", f"unknown type {kind!r}", DISTRIBUTION_TYPES)
    try:
        if kind == "categorical":
            if not conf.get("choices"):
                raise ConfigError(f"{key}.choices", "a categorical entry needs a non-empty list of choices")
            return CategoricalDistribution(list(conf["choices"]))
        if low is None or high is None:
            raise ConfigError(key, f"a {kind} entry needs low and high")
        if kind == "int":
            if log_scale:
                return IntDistribution(int(low), int(high), log=True)
            return IntDistribution(int(low), int(high), step=int(step) if step is not None else 1)
        if log_scale:
            return FloatDistribution(float(low), float(high), log=True)
        return FloatDistribution(float(low), float(high), step=float(step) if step is not None else None)
    except (TypeError, ValueError) as e:
        raise ConfigError(key, f"bad search_space entry {dict(conf)}: {e}") from None


def parse_search_space(
    params: Mapping[str, Any] | None,
    arguments: Sequence[str],
    search_space: Mapping[str, Any] | None = None,
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """``(distributions, fixed overrides)`` from ``params`` (or the deprecated ``search_space``) and
    the command-line arguments. A key on the command line replaces the same key. Errors name the key.
    """
    parser = OverridesParser.create()
    distributions: dict[str, BaseDistribution] = {}
    lines: dict[str, tuple[str, str]] = {}  # key -> (override line, error key)
    if search_space and params:
        log.warning("%s: both params and search_space are set; using params (search_space is deprecated)", KEY)
    elif search_space:
        log.warning("%s.search_space is deprecated (as in hydra-optuna-sweeper); use %s.params", KEY, KEY)
        for name, conf in search_space.items():
            distributions[str(name)] = distribution_from_config(conf, f"{KEY}.search_space.{name}")
    for name, value in (params or {}).items():
        text = value if isinstance(value, str) else format_value(value)
        lines[str(name)] = (f"{name}={text}", f"{KEY}.params.{name}")
    for arg in arguments:
        try:
            (override,) = parser.parse_overrides([arg])
        except HydraException as e:
            raise ConfigError(arg.split("=", 1)[0], f"cannot parse {arg!r}: {one_line(e)}") from None
        key = override.get_key_element()
        distributions.pop(key, None)
        lines[key] = (arg, key)
    fixed: list[str] = []
    for key, (line, err_key) in lines.items():
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as e:
            raise ConfigError(err_key, f"cannot parse {line.split('=', 1)[1]!r}: {one_line(e)}") from None
        dist = distribution_from_override(override, err_key)
        if dist is None:
            fixed.append(override.input_line or line)
        else:
            distributions[key] = dist
    return distributions, fixed


def load_custom_search_space(path: str | None) -> Callable[[Any, Any], None] | None:
    """The ``custom_search_space`` function, ``module.function``; a leading ``.`` (as in
    hydra-optuna-sweeper's example) is dropped, so the module is found on ``sys.path`` (the app's
    directory for ``python app.py``, the working directory for ``python -m``)."""
    if not path:
        return None
    key = f"{KEY}.custom_search_space"
    module_name, _, attr = path.lstrip(".").rpartition(".")
    if not module_name or not attr:
        raise ConfigError(key, f"{path!r} is not a dotted path module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(key, f"cannot import {module_name!r} for {path!r}: {one_line(e)}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(key, f"module {module_name!r} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]
