"""The command line: ``python -m rnnlab [overrides] [-m]`` and ``rnnlab plugins``.

Hydra stays here, at the edge. ``--help``, ``--cfg`` and ``--info`` never import torch, Lightning
or MLflow (``rnnlab.train`` is imported only when a job runs). Every bad input is reported as one
line naming the key and the valid choices, before any run starts; ``HYDRA_FULL_ERROR=1`` shows
the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import hydra
from omegaconf import DictConfig

from rnnlab import config as rconfig
from rnnlab.errors import RnnlabError

# Hydra flags that take a value (the next argument is not an override).
_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--experimental-rerun",
}
_NO_CHECK_FLAGS = {"--hydra-help", "--version", "--shell-completion", "-sc", "--experimental-rerun"}


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _fail(message: str, code: int = 2) -> None:
    print(f"rnnlab: error: {message}", file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path="pkg://rnnlab.conf", config_name="train")
def _hydra_main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from rnnlab.train import train

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return train(cfg)  # the sweeper records a failed job and decides what to do
    try:
        return train(cfg)
    except RnnlabError as e:
        if _full_error():
            raise
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; the MLflow run is marked FAILED", 130)
    except SystemExit as e:  # Lightning exits 1 after handling Ctrl-C
        if e.code not in (0, None):
            _fail("interrupted; the MLflow run is marked FAILED", 130)
        raise
    except Exception as e:
        if _full_error():
            raise
        _fail(f"{type(e).__name__}: {rconfig._first_line(str(e))} (HYDRA_FULL_ERROR=1 shows the traceback)", 1)


def _split(argv: Sequence[str]) -> tuple[list[str], set[str]]:
    """Overrides and flags in ``argv``."""
    overrides, flags = [], set()
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            flags.add(name)
            skip = name in _FLAGS_WITH_VALUE and "=" not in arg and name not in ("--info", "-i")
        else:
            overrides.append(arg)
    return overrides, flags


def check(overrides: Sequence[str], multirun: bool = False) -> None:
    """Compose and validate the config the overrides describe; raise ConfigError on the first problem.

    In a multirun, each comma-list sweep over a config group is checked value by value, and the
    config is composed with the first value of every sweep.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    single: list[str] = []
    groups = None
    for ov in parsed:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            if not ov.is_discrete_sweep():
                continue  # intervals and ranges are the sweeper's to sample
            values = list(ov.sweep_string_iterator())
            if groups is None:
                groups = rconfig.list_groups()
            if ov.key_or_group in groups:
                for v in values:
                    if v not in groups[ov.key_or_group]:
                        raise rconfig.ConfigError(
                            ov.key_or_group, f"unknown {ov.key_or_group} {v!r}", groups[ov.key_or_group]
                        )
            single.append(f"{key}={values[0]}" if values else str(ov.input_line))
        else:
            single.append(str(ov.input_line))
    if not multirun and any(ov.is_sweep_override() for ov in parsed):
        raise rconfig.ConfigError("", "sweep overrides (a=1,2 or choice(...)) need -m / --multirun")
    try:
        cfg = rconfig.compose([s for s in single if not s.startswith("hydra.")])
    except Exception as e:
        raise rconfig.ConfigError("", rconfig.explain(e)) from e
    rconfig.validate(cfg)
    if not multirun:
        from rnnlab.tracking import check_reachable

        check_reachable(cfg.logger.tracking_uri)


def print_help() -> None:
    groups = rconfig.list_groups()
    width = max(len(g) for g in groups)
    lines = [
        "rnnlab - train and compare recurrent networks (RNN, LSTM, GRU) with Hydra, Lightning and MLflow",
        "",
        "usage: python -m rnnlab [KEY=VALUE ...] [GROUP=OPTION ...] [-m] [--cfg job] [--info]",
        "       python -m rnnlab plugins          list installed plugins and their options",
        "",
        "config groups (GROUP=OPTION):",
        *[f"  {g:<{width}}  {', '.join(opts) if opts else '(none)'}" for g, opts in groups.items()],
        "",
        "examples:",
        "  python -m rnnlab                                  default experiment (LSTM, SF temperature)",
        "  python -m rnnlab backbone=gru trainer.max_epochs=5",
        "  python -m rnnlab experiment=seed_lstm",
        "  python -m rnnlab regularizer=[dropout,ar_tar] optimizer=sgd optimizer.lr=0.05",
        "  python -m rnnlab -m backbone=rnn,lstm,gru seed=1,2,3      a grid, one MLflow run per job",
        "  python -m rnnlab --cfg job                         print the composed config and exit",
        "  python -m rnnlab logger.tracking_uri=http://127.0.0.1:5000   log to an MLflow server",
        "",
        "flags: -m/--multirun, --cfg job|hydra|all, --resolve, --info, --hydra-help, -sc (shell completion)",
        "after a run: mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1",
    ]
    print("\n".join(lines))


def print_plugins() -> None:
    from dataclasses import MISSING, fields

    from rnnlab.registry import REGISTRIES

    for kind, registry in REGISTRIES.items():
        print(f"{kind} (entry points '{registry.group}', pick with {kind}=NAME):")
        for name in registry.names():
            schema = registry.schema(name)
            doc = (schema.__doc__ or "").strip().splitlines()
            print(
                f"  {name:<12} {registry.impl_path(name)}"
                + (f"  - {doc[0]}" if doc and not doc[0].startswith(schema.__name__) else "")
            )
            for f in fields(schema):
                if f.name == "name":
                    continue
                default = (
                    f.default
                    if f.default is not MISSING
                    else f.default_factory()
                    if f.default_factory is not MISSING
                    else "???"
                )  # type: ignore[misc]
                type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
                print(f"      {f.name:<16} {type_name:<12} = {default}")
        print()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["plugins"]:
        print_plugins()
        return
    if "--help" in args or "-h" in args:
        print_help()
        return
    overrides, flags = _split(args)
    if not flags & _NO_CHECK_FLAGS:
        try:
            check(overrides, multirun=bool(flags & {"-m", "--multirun"}))
        except RnnlabError as e:
            if _full_error():
                raise
            _fail(str(e))
    sys.argv = [sys.argv[0], *args]
    _hydra_main()
