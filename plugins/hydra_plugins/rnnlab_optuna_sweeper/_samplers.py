"""Sampler and pruner from the sweeper's config: a sampler option by name (rnnlab's short form, or
Hydra's ``hydra/sweeper/sampler`` group) or by ``_target_``; a pruner by name or by ``_target_``.
Arguments are checked against the class's signature before anything runs."""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from rnnlab.errors import ConfigError
from rnnlab.pruning import pruner_from_spec

from ._identity import session_seed
from .config import KEY, SAMPLER_OPTIONS, option_defaults

log = logging.getLogger(__name__)

SAMPLERS_MODULE = "optuna.samplers."
# Removed from Optuna: old class -> (class now, renamed arguments, notice).
REMOVED = {
    "MOTPESampler": (
        "TPESampler",
        {"n_ehvi_candidates": "n_ei_candidates"},
        "optuna.samplers.MOTPESampler was removed in Optuna 4; using TPESampler, which handles several "
        "objectives (n_ehvi_candidates -> n_ei_candidates)",
    ),
}
_OPTION_BY_TARGET = {option._target_: option for option in SAMPLER_OPTIONS.values()}  # type: ignore[attr-defined]


def _sampler_classes() -> list[str]:
    return [n for n in dir(optuna.samplers) if n.endswith("Sampler") and not n.startswith("Base")] + list(REMOVED)


def _check_targets(value: Any, key: str) -> None:
    """Nested ``_target_`` values (e.g. CmaEs's ``independent_sampler``) must be Optuna samplers too."""
    if isinstance(value, Mapping):
        target = value.get("_target_")
        if target is not None and not (
            str(target).startswith(SAMPLERS_MODULE) and hasattr(optuna.samplers, str(target)[len(SAMPLERS_MODULE) :])
        ):
            raise ConfigError(f"{key}._target_", f"{target!r} is not an Optuna sampler", _sampler_classes())
        for k, v in value.items():
            _check_targets(v, f"{key}.{k}")
    elif isinstance(value, list):
        for v in value:
            _check_targets(v, key)


def grid_values(key: str, dist: BaseDistribution) -> list[Any]:
    """The grid of one param, as hydra-optuna-sweeper's ``_to_grid_sampler_choices``: a stepped
    int/float distribution gives ``low, low + step, ...`` *below* ``high`` (so ``range(1, 4)`` is
    1, 2, 3 on a grid, 1..4 for other samplers); only discrete distributions."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return [dist.low + i * dist.step for i in range((dist.high - dist.low) // dist.step)]
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        # floor((high - low) / step) as there, with a tolerance for 1.0 // 0.1 == 9.0
        n = math.floor((dist.high - dist.low) / dist.step + 1e-9)
        return [dist.low + i * dist.step for i in range(n)]
    raise ConfigError(f"{KEY}.params.{key}", "the grid sampler needs choice() or range(), not interval()")


def _resolve(conf: Mapping[str, Any]) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """``(label, class name, defaults, args)`` from the sampler node."""
    conf = dict(conf)
    name, target = conf.pop("name", None), conf.pop("_target_", None)
    conf.pop("_partial_", None)  # the grid option's: the sweeper passes search_space itself
    extra = conf.pop("kwargs", None) or {}
    args = {k: v for k, v in {**conf, **extra}.items() if v is not None}  # None: unset, the option's default
    if name is not None and target is not None:
        raise ConfigError(f"{KEY}.sampler", f"set sampler.name ({name!r}) or sampler._target_ ({target!r}), not both")
    if target is None:  # by name; only arguments (``{seed: 123}``) is the ``tpe`` option, as there
        name = name or "tpe"
        if name not in SAMPLER_OPTIONS:
            raise ConfigError(f"{KEY}.sampler", f"unknown sampler {name!r}", SAMPLER_OPTIONS)
        target = SAMPLER_OPTIONS[name]._target_  # type: ignore[attr-defined]
        label = f"sampler {name!r}"
    else:
        label = str(target)
    target = str(target)
    cls_name = target[len(SAMPLERS_MODULE) :] if target.startswith(SAMPLERS_MODULE) else ""
    if not cls_name or not (hasattr(optuna.samplers, cls_name) or cls_name in REMOVED):
        raise ConfigError(f"{KEY}.sampler._target_", f"{target!r} is not an Optuna sampler", _sampler_classes())
    option = _OPTION_BY_TARGET.get(target)
    defaults = option_defaults(option) if option is not None else {}
    return label, cls_name, defaults, {**defaults, **args}


def sampler_seed(conf: Mapping[str, Any] | None) -> int | None:
    """The configured seed (None: unseeded)."""
    seed = _resolve(conf or {})[3].get("seed")
    return seed if isinstance(seed, int) else None


def create_sampler(
    conf: Mapping[str, Any] | None, distributions: Mapping[str, BaseDistribution], session: int = 0
) -> tuple[optuna.samplers.BaseSampler, int | None]:
    """``(sampler, grid size or None)``. Arguments: the option's defaults (hydra-optuna-sweeper's),
    then what is set; None means the class's own default. An argument this Optuna no longer takes is
    dropped while at the option's default, else an error naming the key. ``session`` > 0 (a resumed
    study, a worker): the seed is derived from (seed, session), see ``_identity``."""
    label, cls_name, defaults, args = _resolve(conf or {})
    if isinstance(args.get("seed"), int):
        args["seed"] = session_seed(args["seed"], session)
    if cls_name in REMOVED:
        cls_name, renamed, notice = REMOVED[cls_name]
        log.info("%s.sampler: %s", KEY, notice)
        args = {renamed.get(k, k): v for k, v in args.items()}
        defaults = {renamed.get(k, k): v for k, v in defaults.items()}
    cls = getattr(optuna.samplers, cls_name)
    accepted = [p for p in inspect.signature(cls).parameters if p != "search_space"]
    kwargs: dict[str, Any] = {}
    for k, v in args.items():
        if v is None or (k not in accepted and k in defaults and v == defaults[k]):
            continue
        if k not in accepted:
            raise ConfigError(f"{KEY}.sampler.{k}", f"not an argument of {label}", accepted)
        _check_targets(v, f"{KEY}.sampler.{k}")
        kwargs[k] = v
    grid_size = None
    if cls_name == "GridSampler":
        if not distributions:
            raise ConfigError(f"{KEY}.params", "the grid sampler needs at least one choice() or range() param")
        space = {k: grid_values(k, d) for k, d in distributions.items()}
        grid_size = math.prod(len(v) for v in space.values())
        kwargs["search_space"] = space
    if cls_name == "CmaEsSampler":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError(f"{KEY}.sampler", "sampler 'cmaes' needs the cmaes package: pip install cmaes") from None
    try:
        with warnings.catch_warnings():
            # hydra-optuna-sweeper's defaults include arguments Optuna 4 deprecates (consider_prior, ...)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            sampler = instantiate({"_target_": SAMPLERS_MODULE + cls_name, **kwargs}, _convert_="all")
    except (InstantiationException, TypeError, ValueError) as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ else e
        raise ConfigError(f"{KEY}.sampler", f"bad arguments for {label}: {cause}") from None
    return sampler, grid_size


def pruner_spec(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"name": ..., **args}`` or ``{"_target_": ..., **args}`` with the arguments that are set;
    validated by building the pruner. It travels with each trial, so a job anywhere prunes alike."""
    spec = {k: v for k, v in (conf or {}).items() if v is not None}
    if "_target_" not in spec:
        spec.setdefault("name", "none")
    pruner_from_spec(spec, f"{KEY}.pruner")
    return spec


def prunes(spec: Mapping[str, Any]) -> bool:
    if "_target_" in spec:
        return bool(spec["_target_"] != "optuna.pruners.NopPruner")
    return bool(spec.get("name") != "none")
