"""The command line: ``python -m rnnlab [overrides] [-m]`` and ``rnnlab plugins``.

Hydra stays here, at the edge. ``--help``, ``--cfg`` and ``--info`` never import torch, Lightning
or MLflow (``rnnlab.train`` is imported only when a job runs). Every bad input is reported as one
line naming the key and the valid choices, before any run starts; ``HYDRA_FULL_ERROR=1`` shows
the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import hydra
from omegaconf import DictConfig

from rnnlab import composition
from rnnlab.checks import check, expand_seeds, sweeper_params_as_arguments, take_credentials
from rnnlab.errors import RnnlabError, first_line

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
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
# Hydra runs in one of these modes; it refuses two of them with a traceback.
_MODES = (("--multirun", "-m"), ("--cfg", "-c"), ("--info", "-i"), ("--shell-completion", "-sc"))
# Commands on logged runs: ``rnnlab NAME ...`` runs the module's ``main(args)``.
_COMMANDS = {
    "evaluate": "rnnlab.evaluate",  # test a logged model again, on its own split or other data
    "predict": "rnnlab.predict",  # forecast, classify or write text with a logged model
    "compare": "rnnlab.compare",  # runs grouped over seeds: mean ± 95 % interval, baselines, a verdict
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

    from rnnlab.lifecycle import Interrupted
    from rnnlab.train import train

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        # the sweeper records a failed job and decides what to do; Interrupted stops the sweep
        return train(cfg)
    try:
        return train(cfg)
    except RnnlabError as e:
        if _full_error():
            raise
        _fail(str(e), e.exit_code)
    except Interrupted as e:  # the run is ended KILLED; exit 130 (SIGINT) or 143 (SIGTERM)
        _fail(f"stopped by {e.name}; the MLflow run is marked KILLED", e.exit_code)
    except KeyboardInterrupt:  # before the run was opened
        _fail("interrupted", 130)
    except Exception as e:
        if _full_error():
            raise
        _fail(f"{type(e).__name__}: {first_line(str(e))} (HYDRA_FULL_ERROR=1 shows the traceback)", 1)


def _split(argv: Sequence[str]) -> tuple[list[str], dict[str, str | None]]:
    """Overrides and flags (with their values) in ``argv``."""
    overrides: list[str] = []
    flags: dict[str, str | None] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if eq:
            flags[name] = value
        elif name in ("--info", "-i"):  # its value is optional
            flags[name] = args[i] if i < len(args) and args[i] in _INFO_TOPICS else None
            i += flags[name] is not None
        elif name in _FLAGS_WITH_VALUE:
            flags[name] = args[i] if i < len(args) else None
            i += 1
        else:
            flags[name] = None
    return overrides, flags


def print_help() -> None:
    groups = composition.list_groups()
    width = max(len(g) for g in groups)
    lines = [
        "rnnlab - train and compare recurrent networks (RNN, LSTM, GRU) with Hydra, Lightning and MLflow",
        "",
        "usage: python -m rnnlab [KEY=VALUE ...] [GROUP=OPTION ...] [-m] [--cfg job] [--info]",
        "       python -m rnnlab plugins          list installed plugins and their options",
        "       python -m rnnlab diagnose RUN_ID  a run's gradient flow: vanishing, exploding or healthy",
        "       python -m rnnlab evaluate RUN_ID [KEY=VALUE ...]  test a logged model again (other data too)",
        "       python -m rnnlab predict RUN_ID ...  forecast, classify or write text with a logged model",
        "       python -m rnnlab compare [--metric M]     runs grouped over seeds: mean ± 95 % interval, a verdict",
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
        "  python -m rnnlab -m backbone=rnn,lstm,gru seeds=5  each backbone over seeds 0-4, then: rnnlab compare",
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


def _diagnose(args: list[str]) -> None:
    """``python -m rnnlab diagnose RUN_ID [--tracking-uri URI]``: a past run's gradient-flow verdict."""
    import argparse

    from rnnlab.errors import RnnlabError
    from rnnlab.schemas import DiagnosticsConfig, LoggerConfig

    parser = argparse.ArgumentParser(
        prog="rnnlab diagnose", description="a run's gradient flow: vanishing, exploding or healthy"
    )
    parser.add_argument("run_id")
    parser.add_argument(
        "--tracking-uri", default=LoggerConfig.tracking_uri, help="the MLflow store (default: %(default)s)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=DiagnosticsConfig.samples,  # what a run measures on: the same default
        help="training sequences to recompute on (default: %(default)s)",
    )
    opts = parser.parse_args(args)
    from rnnlab.diagnostics import diagnose

    try:
        print(diagnose(opts.run_id, opts.tracking_uri, opts.samples))
    except RnnlabError as e:
        print(f"rnnlab: error: {e}", file=sys.stderr)
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    args = sweeper_params_as_arguments(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["plugins"]:
        print_plugins()
        return
    if args[:1] == ["diagnose"]:
        _diagnose(args[1:])
        return
    if args[:1] and args[0] in _COMMANDS:  # each parses its own arguments
        importlib.import_module(_COMMANDS[args[0]]).main(args[1:])
        return
    if args[:1] == ["sync"]:  # replay runs whose records a tracking outage left in their spool
        from rnnlab.spool import sync

        sys.exit(0 if sync(args[1] if len(args) > 1 else ".") == 0 else 1)
    if "--help" in args or "-h" in args:
        print_help()
        return
    composition.register_schemas()
    try:
        args = take_credentials(args)
    except RnnlabError as e:
        _fail(str(e))
    overrides, flags = _split(args)
    modes = [m for m in _MODES if flags.keys() & set(m)]
    if len(modes) > 1:
        _fail(f"{' and '.join(m[0] for m in modes)} cannot be given together; pick one")
    if not flags.keys() & _NO_CHECK_FLAGS:
        config_name = flags.get("--config-name") or flags.get("-cn") or composition.CONFIG_NAME
        config_dir = flags.get("--config-dir") or flags.get("-cd")
        try:
            overrides = expand_seeds(overrides, flags, config_name, config_dir)  # seeds=N: a multirun over seeds
            check(
                overrides,
                multirun=bool(flags.keys() & {"-m", "--multirun"}),
                config_name=config_name,
                config_dir=config_dir,
                run=not flags.keys() & {"--cfg", "-c", "--info", "-i"},
            )
        except RnnlabError as e:
            if _full_error():
                raise
            _fail(str(e))
    # Flags first: Hydra's parser takes the overrides as one positional list, so `a=1 -m b=2` would
    # leave b=2 unrecognized.
    flag_args = [t for name, value in flags.items() for t in ([name] if value is None else [name, value])]
    sys.argv = [sys.argv[0], *flag_args, *overrides]
    try:
        _hydra_main()
    except KeyboardInterrupt as e:  # a multirun stopped by a signal (a single run exits in _hydra_main)
        if _full_error():
            raise
        _fail(f"stopped by {getattr(e, 'name', 'SIGINT (signal 2)')}", getattr(e, "exit_code", 130))
