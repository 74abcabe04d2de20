"""Everything the command line describes, checked before anything runs: every job of a multirun, the
sweeper's search space, devices, stores, and credentials taken out of URIs. One line naming the key
(ConfigError) on the first problem. No torch unless a GPU is asked for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab import composition, stores, validation
from rnnlab.errors import ConfigError, RnnlabError, first_line

_SWEEP_PARAMS = "hydra.sweeper.params."

# Hydra launchers that run each job in the sweeping process itself; every other one (joblib, submitit,
# Ray) runs jobs in other processes or on other machines.
IN_PROCESS_LAUNCHERS = ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",)
# launcher=NAME (conf/launcher/) or hydra/launcher=NAME -> the Hydra plugin it needs and rnnlab's extra for it
LAUNCHER_PLUGINS = {
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "slurm"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "slurm"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher", "ray"),
    "ray_cluster": ("hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher", "ray"),
}


def sweeper_params_as_arguments(args: Sequence[str]) -> list[str]:
    """In a multirun, ``hydra.sweeper.params.KEY=EXPR`` on the command line is the sweep argument
    ``KEY=EXPR``: the same search space for the sweeper (a command-line key replaces the same key of
    ``params``), and Hydra no longer refuses it as a sweep over its own config. Dotted keys work too."""
    if not {"-m", "--multirun"} & set(args):
        return list(args)
    out = []
    for arg in args:
        key, eq, value = arg.partition("=")
        bare = key.lstrip("+")
        if eq and not arg.startswith("-") and bare.startswith(_SWEEP_PARAMS):
            arg = f"{bare[len(_SWEEP_PARAMS) :]}={value}"
        out.append(arg)
    return out


SEEDS_KEY = "seeds"
_MULTIRUN = ("-m", "--multirun")
_ONE_JOB_FLAGS = ("--cfg", "-c", "--info", "-i")


def seed_list(value: Any, key: str = SEEDS_KEY) -> list[int]:
    """The seeds ``seeds=`` stands for: ``5`` -> 0..4, ``[0,3,7]`` -> those; a ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a number of seeds (>= 1) or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(key, f"must be >= 1 (the number of seeds), got {value}")
        return list(range(value))
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        if min(value) < 0 or len(set(value)) != len(value):
            raise ConfigError(key, f"seeds must be distinct and >= 0, got {list(value)}")
        return list(value)
    raise ConfigError(key, f"must be a number of seeds (>= 1) or a list of seeds such as [0,3,7], got {value!r}")


def expand_seeds(
    overrides: Sequence[str],
    flags: dict[str, str | None],
    config_name: str = composition.CONFIG_NAME,
    config_dir: str | None = None,
) -> list[str]:
    """``seeds=N`` (seeds 0..N-1) or ``seeds=[a,b,...]``: the same experiment once per seed, each its
    own MLflow run, all with the same ``rnnlab.group`` tag (``rnnlab.tracking.group_tags``). It is a
    multirun (``-m`` is added to ``flags``). With Hydra's basic sweeper it becomes the sweep
    ``seed=0,1,...`` (a grid with the other sweeps: ``-m backbone=rnn,lstm,gru seeds=5`` is 15 jobs);
    with the Optuna sweeper ``hydra.sweeper.seeds``: each trial runs once per seed and its value is
    the mean. The overrides without ``seeds=``, rewritten; unchanged when there is none."""
    parsed = _parse(overrides)
    at = [i for i, ov in enumerate(parsed) if ov.get_key_element().lstrip("+~") == SEEDS_KEY]
    if not at:
        return list(overrides)
    ov = parsed[at[-1]]
    if ov.is_sweep_override():
        raise ConfigError(SEEDS_KEY, "takes a number of seeds or a list ([0,3,7]), not a sweep")
    seeds = seed_list(ov.value())
    if flags.keys() & set(_ONE_JOB_FLAGS):
        raise ConfigError(SEEDS_KEY, "runs one job per seed (a multirun); --cfg and --info show one job: use seed=N")
    rest = [o for i, o in enumerate(overrides) if i not in at]
    if any(p.get_key_element().lstrip("+~") == "seed" for i, p in enumerate(parsed) if i not in at):
        raise ConfigError(SEEDS_KEY, "seeds= and seed= cannot both be given; seeds=[...] lists the seeds")
    if not flags.keys() & set(_MULTIRUN):
        flags["-m"] = None
    with composition.Composer(config_name, config_dir) as compose:
        full = _compose(compose, _first_values(_parse(rest)), return_hydra_config=True)
    if "optuna" in str(OmegaConf.select(full, "hydra.sweeper._target_", default="")):
        return [*rest, f"hydra.sweeper.seeds=[{','.join(map(str, seeds))}]"]
    return [*rest, "seed=" + ",".join(map(str, seeds))]


def _first_values(parsed: Sequence[Any]) -> list[str]:
    """The overrides with every sweep at its first value: one job of the multirun."""
    return [
        _as_override(ov, (_sweep_values(ov) or [None])[0]) if ov.is_sweep_override() else ov.input_line for ov in parsed
    ]


def _parse(overrides: Sequence[str]) -> list[Any]:
    """Hydra's parse of each override; a syntax error is one line naming the override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as e:
            key = text.split("=", 1)[0].lstrip("+~")
            raise ConfigError(key, f"cannot parse {text!r}: {first_line(e.message)}") from None
    return parsed


def _sweep_values(ov: Any, stop_included: bool = False) -> list[Any] | None:
    """The values a sweep override stands for (every choice, range value and interval end); None if
    it is not a sweep. ``stop_included``: the Optuna sweeper's ``range`` includes ``stop``, as
    hydra-optuna-sweeper's did; Hydra's basic sweeper excludes it."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    if not ov.is_sweep_override():
        return None
    value = ov.value()
    if isinstance(value, IntervalSweep):
        return [value.start, value.end]
    values = list(ov.sweep_iterator())
    if stop_included and isinstance(value, RangeSweep) and value.stop is not None and not value.shuffle:
        values.append(value.stop)
    return values


def _as_override(ov: Any, value: Any) -> str:
    """``key=value`` for one value of a sweep, in Hydra's syntax."""
    prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(ov.type.name, "")
    return f"{prefix}{ov.get_key_element()}={_format(value)}"


def check(
    overrides: Sequence[str],
    *,
    multirun: bool = False,
    config_name: str = composition.CONFIG_NAME,
    config_dir: str | None = None,
    run: bool = True,
) -> None:
    """Compose and validate every job the command line describes; raise ConfigError on the first problem.

    A single run is composed and validated as it will run. In a multirun every value of every sweep
    (``a,b,c``, ``choice``, ``range``, both ends of ``interval``, and the same in a sweep preset's
    ``hydra.sweeper.params``) is composed in turn with the other keys at their first value, so a bad
    value fails before job 0 starts. ``run=False`` (``--cfg``, ``--info``) skips the checks that
    need the machine (devices, a tracking server).
    """
    parsed = _parse(overrides)
    _check_launcher_installed(parsed)
    sweeps = [ov for ov in parsed if ov.is_sweep_override()]
    if sweeps and not multirun:
        raise ConfigError(sweeps[0].get_key_element(), "sweep overrides (a=1,2 or choice(...)) need -m / --multirun")
    base = _first_values(parsed)
    with composition.Composer(config_name, config_dir) as compose:
        full = _compose(compose, base, return_hydra_config=True)
        job = _without_hydra(full)
        validated = validation.validate(job)
        optuna = "optuna" in str(OmegaConf.select(full, "hydra.sweeper._target_", default=""))
        variants = [
            (ov.get_key_element(), _as_override(ov, v)) for ov in sweeps for v in (_sweep_values(ov, optuna) or [])[1:]
        ]
        variants += _sweeper_space_variants(full, {ov.get_key_element() for ov in parsed})
        for key, line in variants:
            rest = [b for b, p in zip(base, parsed, strict=True) if p.get_key_element() != key]
            validation.validate(_compose(compose, [*rest, line]))
    _check_no_passwords(full)
    if multirun:
        _check_objective(full, validated)
        if optuna:
            launcher = OmegaConf.select(full, "hydra.launcher._target_", default="")
            choice = OmegaConf.select(full, "hydra.runtime.choices", default={}).get("hydra/launcher")
            storage = OmegaConf.select(full, "hydra.sweeper.storage")
            check_sweep_storage(storage, launcher, choice)
            if isinstance(storage, str) and storage != "auto":
                _check_own_database(storage, validated.config.logger.tracking_uri)
    if run:
        _check_devices(validated.config.trainer)
        if validated.config.resume is not None:
            from rnnlab import resume

            lc = validated.config.logger
            found = resume.resolve(validated.config.resume, lc.tracking_uri, lc.experiment_name)
            _check_checkpoint(str(found.checkpoint))
        from rnnlab.tracking import check_reachable

        check_reachable(validated.config.logger.tracking_uri)
        stores.check_database(stores.absolute(validated.config.logger.tracking_uri), "logger.tracking_uri")
        storage = OmegaConf.select(full, "hydra.sweeper.storage", default=None) if multirun and optuna else None
        if isinstance(storage, str) and storage != "auto":
            stores.check_database(stores.absolute(storage), "hydra.sweeper.storage")


def check_sweep_storage(storage: str | None, launcher: str, name: str | None = None) -> None:
    """``storage: null`` keeps the Optuna study in the sweeping process's memory, where only jobs of that
    process (Hydra's basic launcher) can find their trial, report to it and be pruned."""
    if storage is None and launcher not in IN_PROCESS_LAUNCHERS:
        raise ConfigError(
            "hydra.sweeper.storage",
            f"null is an in-memory study, out of reach of the trials that launcher "
            f"{name or launcher.rpartition('.')[2]!r} runs in other processes; leave it unset (optuna.db beside "
            "mlflow.db), or set sqlite:///optuna.db on one machine, postgresql://... across machines",
        )


def _database(uri: str) -> tuple[str, str | None, int | None, str] | None:
    """What identifies the database behind an SQLAlchemy URL (driver and credentials aside); None for
    anything else (an MLflow server, a journal file)."""
    from urllib.parse import urlsplit

    kind = stores.scheme(uri)
    if kind not in stores.STORAGE_SCHEMES or kind == "journal":
        return None
    if kind == "sqlite":
        path = stores.sqlite_path(stores.absolute(uri))
        return (kind, None, None, str(path.resolve()) if path else uri)
    parts = urlsplit(uri)
    default_port = {"postgresql": 5432, "mysql": 3306}.get(kind)
    return (kind, parts.hostname, parts.port or default_port, parts.path.rstrip("/"))


def _check_own_database(storage: str, tracking_uri: str) -> None:
    """Optuna and MLflow both keep their schema's version in the table ``alembic_version``: one
    database cannot hold both (MLflow then fails on Optuna's revision, after the sweep has started)."""
    if _database(storage) is not None and _database(storage) == _database(tracking_uri):
        raise ConfigError(
            "hydra.sweeper.storage",
            f"{stores.redact(storage)} is also logger.tracking_uri's database; Optuna and MLflow each need "
            "their own (both version their schema in the table alembic_version)",
        )


def _check_launcher_installed(parsed: Sequence[Any]) -> None:
    """``launcher=ray`` (or ``hydra/launcher=ray``) without hydra-ray-launcher: say which extra installs it."""
    import importlib.util

    for ov in parsed:
        key, value = ov.key_or_group, ov.value()
        if key not in ("launcher", "hydra/launcher") or not isinstance(value, str) or value not in LAUNCHER_PLUGINS:
            continue
        module, dist, extra = LAUNCHER_PLUGINS[value]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(key, f"{value!r} needs {dist}, which is not installed: pip install 'rnnlab[{extra}]'")


def take_credentials(args: Sequence[str]) -> list[str]:
    """Overrides with every password taken out of their URIs and put where the client reads it from
    the environment (``stores.split_credentials``), so Hydra's ``.hydra/*.yaml``, the logs, params,
    tags and artifacts never hold it. Child processes (DDP ranks, sweep workers) inherit it."""
    out = []
    for arg in args:
        key, eq, value = arg.partition("=")
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        if eq and not arg.startswith("-") and "://" in text and "@" in text:
            name = key.lstrip("+~")
            clean, env = stores.split_credentials(text, name)
            if env:
                stores.export_credentials(env, name)
                arg = f"{key}='{clean}'"
        out.append(arg)
    return out


def _check_no_passwords(full: DictConfig) -> None:
    """A password in a URI that comes from a config file would be written to every record."""
    from urllib.parse import urlsplit

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str) and "://" in node and "@" in node and "${" not in node:
            try:
                has_password = urlsplit(node).password is not None
            except ValueError:
                return
            if has_password:
                raise ConfigError(
                    path,
                    f"{stores.redact(node)} holds a password in a config file; pass it in the environment "
                    "(MLFLOW_TRACKING_PASSWORD for a server, PGPASSWORD for PostgreSQL) or on the command line",
                )

    walk(OmegaConf.to_container(full, resolve=False), "")


def _compose(compose: Any, overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    try:
        return compose(overrides, return_hydra_config=return_hydra_config)
    except RnnlabError:
        raise
    except Exception as e:
        message = composition.explain(e, overrides)
        raise ConfigError("", message) from e


def _without_hydra(cfg: DictConfig) -> DictConfig:
    from omegaconf import OmegaConf, open_dict

    job = cfg.copy()
    with open_dict(job):
        job.pop("hydra", None)
    OmegaConf.set_struct(job, True)
    return job


def _sweeper_space_variants(full: DictConfig, on_command_line: set[str]) -> list[tuple[str, str]]:
    """``(key, override)`` for every value of the sweeper's search space that the command line does
    not replace: each value of ``hydra.sweeper.params`` expressions and the choices / bounds of
    hydra-optuna-sweeper's ``search_space`` dicts (``custom_search_space`` is define-by-run: its values
    exist only inside a trial)."""
    from omegaconf import DictConfig, OmegaConf

    out: list[tuple[str, str]] = []
    params = OmegaConf.select(full, "hydra.sweeper.params", default=None) or {}
    for key, expr in params.items():
        if key in on_command_line or expr is None:
            continue
        (ov,) = _parse([f"{key}={expr if isinstance(expr, str) else _format(expr)}"])
        out += [(key, _as_override(ov, v)) for v in (_sweep_values(ov, stop_included=True) or [ov.value()])]
    space = OmegaConf.select(full, "hydra.sweeper.search_space", default=None) or {}
    for key, spec in space.items():
        if key in on_command_line or key in params or not isinstance(spec, DictConfig):
            continue
        values = list(spec.get("choices") or []) or [spec.get(b) for b in ("low", "high") if spec.get(b) is not None]
        if spec.get("type") == "int":
            values = [int(v) for v in values]
        out += [(key, f"{key}={_format(v)}") for v in values]
    return out


def _format(value: Any) -> str:
    """A value as the right-hand side of an override."""
    from hydra.core.override_parser.types import Quote, QuotedString

    if isinstance(value, str):
        return QuotedString(text=value, quote=Quote.single).with_quotes()
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _check_objective(full: DictConfig, validated: Any) -> None:
    """A sweep's ``objective`` must be a key of the dict ``train()`` returns."""
    from omegaconf import ListConfig, OmegaConf

    sweeper = OmegaConf.select(full, "hydra.sweeper", default=None)
    if sweeper is None or "objective" not in sweeper:
        return
    objective = sweeper.objective
    names = list(objective) if isinstance(objective, ListConfig) else [objective]
    valid = validation.returned_metrics(validated)
    for name in names:
        if name is not None and str(name) not in valid:
            raise ConfigError("hydra.sweeper.objective", f"train() does not return {str(name)!r}", valid)


def _check_precision(trainer: Any) -> None:
    """A precision the chosen device runs as asked. Lightning turns ``16-mixed`` on the CPU into
    ``bf16-mixed`` with a warning (the run's params would then say what did not run), and needs
    transformer_engine for its own precisions."""
    precision = str(trainer.precision)
    if precision.startswith("transformer-engine"):
        import importlib.util

        if importlib.util.find_spec("transformer_engine") is None:
            raise ConfigError(
                "trainer.precision", f"{precision!r} needs transformer_engine, which is not installed", PLAIN_PRECISIONS
            )
    if precision not in ("16-mixed", "16"):
        return
    if trainer.accelerator not in ("cpu", "auto"):
        return
    if trainer.accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return
    where = "trainer.accelerator is 'cpu'" if trainer.accelerator == "cpu" else "this machine has no CUDA device"
    raise ConfigError(
        "trainer.precision",
        f"{precision!r} (float16 autocast) needs a CUDA device and {where}",
        CPU_PRECISIONS,
        label="on the CPU use",
    )


# What runs on the CPU as asked (bf16 autocast is the CPU's mixed precision), and on any device.
CPU_PRECISIONS = ["32-true", "bf16-mixed", "64-true"]
PLAIN_PRECISIONS = ["32-true", "bf16-mixed", "16-mixed", "64-true"]


def _check_devices(trainer: Any) -> None:
    """The accelerator the Trainer asks for is present (imports torch only when one is asked for)."""
    _check_precision(trainer)
    accelerator = trainer.accelerator
    if accelerator in ("auto", "cpu"):
        return
    if accelerator == "tpu":
        import importlib.util

        if importlib.util.find_spec("torch_xla") is None:
            raise ConfigError("trainer.accelerator", "'tpu' needs torch_xla, which is not installed", ["auto", "cpu"])
        return
    import torch

    if accelerator == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("trainer.accelerator", "'mps' is not available on this machine", ["auto", "cpu"])
        return
    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError(
            "trainer.accelerator", f"{accelerator!r} asked for, but this machine has no CUDA device", ["auto", "cpu"]
        )
    devices = trainer.devices
    wanted = devices if isinstance(devices, int) and devices > 0 else None
    if isinstance(devices, (list, tuple)):
        bad = [d for d in devices if d >= count]
        if bad:
            raise ConfigError("trainer.devices", f"no CUDA device {bad[0]}; this machine has {count}")
    elif wanted is not None and wanted > count:
        raise ConfigError("trainer.devices", f"{wanted} GPUs asked for; this machine has {count}")


def _check_checkpoint(path: str) -> None:
    """``resume=`` names a checkpoint that loads weights-only (no code runs from a file someone handed
    you); a file that does not is one line, without torch's advice to load it unsafely."""
    import pickle

    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        detail = next((line.strip() for line in str(e).splitlines() if "WeightsUnpickler error" in line), "")
        reason = (detail or first_line(str(e))).split(". Please")[0].split(". ")[0]
        raise ConfigError("resume", f"{path} does not load as a checkpoint, weights only: {reason}") from None
