"""The run's lifecycle around fit and test: ``with RunLifecycle(cfg, out_dir) as life: ...``.

On entry: DDP ranks > 0 are made to re-run this job (not a whole sweep), the DDP environment is
snapshot, the MLflow run is opened (rank 0 only), SIGINT and SIGTERM are turned into ``Interrupted``.
On exit, in this order: the DDP environment and process group are put back as they were (the next
job of an in-process sweep starts clean), the signal handlers are restored, the buffered metrics are
sent and the run is ended FINISHED, FAILED (any exception, with ``rnnlab.error``), KILLED (SIGINT or
SIGTERM, ``rnnlab.error`` naming the signal; ``Interrupted`` is raised, and the CLI exits 128 + the
signal's number) or, for a pruned Optuna trial, FINISHED with ``optuna.trial_state=PRUNED``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from omegaconf import DictConfig

from rnnlab import stores
from rnnlab.processes import alive, process_start

# Set by Lightning's DDP launcher in this process; a later job of the same sweep must not inherit them,
# or Lightning would take its processes as started by someone else and wait for them.
DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run: raised like Ctrl-C, so Lightning and a sweep stop as for it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = f"{signal.Signals(signum).name} (signal {signum})"
        super().__init__(self.name)

    def __reduce__(self) -> tuple[type[Interrupted], tuple[int]]:  # crosses processes in a launcher's job return
        return type(self), (self.signum,)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class RunLifecycle:
    """Opens, guards and closes one training run; ``run`` is the TrackedRun (None on ranks > 0)."""

    def __init__(self, cfg: DictConfig, out_dir: Path, resume_run_id: str | None = None) -> None:
        self.cfg = cfg
        self.out_dir = out_dir
        self.resume_run_id = resume_run_id
        self.run: Any = None
        self._ddp_env: dict[str, str | None] = {}
        self._dist_before = False
        self._previous_handlers: dict[int, Any] = {}
        self._restore_launcher: Any = None
        self.signum: int | None = None  # the first SIGINT / SIGTERM received
        self._hold = 0  # > 0 while a write to the store is under way: a signal waits for its end
        self._raised = False

    def __enter__(self) -> RunLifecycle:
        self._restore_launcher = ddp_ranks_run_this_job(self.out_dir.resolve())
        self._ddp_env = {k: os.environ.get(k) for k in DDP_ENV}
        self._dist_before = dist_initialized()
        if rank() == 0:
            try:
                self.run = open_run(self.cfg, self.out_dir, self.resume_run_id)
            except BaseException:
                if self._restore_launcher is not None:
                    self._restore_launcher()
                raise
            self.run.guard = self._signals_wait
        if _main_thread():
            # Lightning's own SIGTERM handler, installed in fit, calls this one after its own.
            self._previous_handlers = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return  # already stopping: let the run be ended
        self.signum = signum
        if not self._hold:
            self._raised = True
            raise Interrupted(signum)

    @contextlib.contextmanager
    def _signals_wait(self) -> Iterator[None]:
        """A signal received meanwhile is raised once the write to the store is done (never half way
        through an SQL transaction)."""
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1
            if not self._hold and self.signum is not None and not self._raised:
                self._raised = True
                raise Interrupted(self.signum)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._raised = True  # from here on a signal is only recorded: the run is being ended
        status, state, error = "FINISHED", "COMPLETE", ""
        interrupted = Interrupted(self.signum) if self.signum is not None else None
        if interrupted is not None:
            # Lightning turns Ctrl-C into SystemExit(1); say which signal it was. KILLED, as MLflow
            # calls a run stopped from outside (the sweeper's parent run too), not FAILED.
            status, state, error = "KILLED", "FAIL", f"stopped by {interrupted.name}"
        elif exc is not None:
            status, state, error = "FAILED", "FAIL", f"{type(exc).__name__}: {exc}"
            if type(exc).__name__ == "TrialPruned":
                status, state = "FINISHED", "PRUNED"
        try:
            self._teardown()
        finally:
            if self.run is not None:
                if status != "FINISHED":
                    self.run.set_tags({"rnnlab.error": scrub(error, self.cfg.logger.tracking_uri)[:5000]})
                if self.cfg.trial.number is not None:
                    self.run.set_tags({"optuna.trial_state": state})
                # interrupted: the user wants out; the spool keeps what the store did not get
                self.run.end(status, wait=min(5.0, self.cfg.logger.sync_timeout) if interrupted else None)
        if interrupted is not None and not isinstance(exc, Interrupted):
            raise interrupted from None

    def _teardown(self) -> None:
        for key, value in self._ddp_env.items():
            if value is None:
                os.environ.pop(key, None)
        if dist_initialized() and not self._dist_before:
            # Lightning leaves the process group up after a normal fit/test; the next job of a sweep in
            # this process needs a group of its own (the old one names ranks that have exited).
            import torch.distributed

            torch.distributed.destroy_process_group()
        if self._restore_launcher is not None:
            self._restore_launcher()
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)


def open_run(cfg: DictConfig, out_dir: Path, resume_run_id: str | None = None) -> Any:
    """The MLflow run for ``cfg``, tagged with versions, plugins, the command and the Optuna trial."""
    from rnnlab import tracking

    lc = cfg.logger
    trial_tags = {}
    if cfg.trial.number is not None:
        trial_tags = {"optuna.trial_number": str(cfg.trial.number), "optuna.study_name": str(cfg.trial.study_name)}
    run = tracking.TrackedRun(
        lc.tracking_uri,
        lc.experiment_name,
        run_name(cfg),
        tags={
            **tracking.version_tags(),
            **dict(lc.tags),
            **trial_tags,
            **tracking.group_tags(cfg),
            "rnnlab.backbone": cfg.backbone.name,
            "rnnlab.data": cfg.data.name,
            "rnnlab.command": scrub(command(), lc.tracking_uri),
            "rnnlab.output_dir": str(out_dir.resolve()),
            **process_tags(),
        },
        run_id=resume_run_id,
        parent_run_id=cfg.trial.mlflow_parent_run_id,
        flush_every=lc.flush_every_n_steps,
        spool_dir=out_dir,
        sync_timeout=lc.sync_timeout,
    )
    end_dead_runs(run.client, run.experiment_id)
    return run


def process_tags() -> dict[str, str]:
    """The process that owns a run (with ``host``): a run left RUNNING by a process that is gone is
    found by ``end_dead_runs``. The start time tells a reused pid from the original process."""
    pid = os.getpid()
    return {"rnnlab.pid": str(pid), "rnnlab.pid_start": process_start(pid) or ""}


def end_dead_runs(client: Any, experiment_id: str) -> list[str]:
    """Mark KILLED, with why in ``rnnlab.error``, the runs of this experiment that a process of this
    host left RUNNING and that is gone (SIGKILL, the out-of-memory killer, power loss); their ids.
    Runs of other hosts are left alone: their processes cannot be checked from here."""
    import logging
    import socket

    host = socket.gethostname()
    found = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.host = '{host}'", max_results=1000
    )
    ended = []
    for r in found:
        pid, start = r.data.tags.get("rnnlab.pid"), r.data.tags.get("rnnlab.pid_start")
        if not pid or not pid.isdigit() or alive(int(pid), start or None):
            continue
        why = f"its process (pid {pid} on {host}) ended without closing the run (SIGKILL, out of memory, power loss)"
        client.set_tag(r.info.run_id, "rnnlab.error", why)
        client.set_terminated(r.info.run_id, status="KILLED")
        logging.getLogger(__name__).warning("MLflow run %s marked KILLED: %s", r.info.run_id, why)
        ended.append(r.info.run_id)
    return ended


def scrub(text: str, *uris: str) -> str:
    """``text`` with each of ``uris`` (and its absolute form) shown without its password."""
    for uri in uris:
        for form in {str(uri), stores.absolute(str(uri))}:
            if form:
                text = text.replace(form, stores.redact(form))
    return text


def ddp_ranks_run_this_job(out_dir: Path) -> Any:
    """Lightning starts DDP ranks > 0 by re-running the command line. In a multirun that would start
    the whole sweep again in every rank (Lightning #11300, lightning-hydra-template #393); make the
    ranks run this job alone instead: its own overrides, a single run, in its output dir.

    Returns a function that puts Lightning's command back, or None when nothing was patched."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    import pytorch_lightning.strategies.launchers.subprocess_script as launcher

    overrides = list(HydraConfig.get().overrides.task)
    original = launcher._hydra_subprocess_cmd

    def command(local_rank: int) -> tuple[list[str], str]:
        return (
            [
                sys.executable,
                "-m",
                "rnnlab",
                *overrides,
                f'hydra.run.dir="{out_dir}"',
                f"hydra.job.name=ddp_rank_{local_rank}",
                "hydra.output_subdir=null",
            ],
            os.getcwd(),
        )

    launcher._hydra_subprocess_cmd = command

    def restore() -> None:
        launcher._hydra_subprocess_cmd = original

    return restore


# Set by whatever started this process as a DDP rank: torchrun (RANK, LOCAL_RANK), srun (SLURM_PROCID),
# Lightning's own launcher (NODE_RANK, LOCAL_RANK). The global rank zero has 0 in all it sets.
RANK_ENV = ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID")


def rank() -> int:
    """0 in the process that owns the run (DDP's global rank zero, or no DDP), else > 0. Not LOCAL_RANK
    alone: on every node of a multi-node run some process has LOCAL_RANK 0."""
    return max(int(os.environ.get(key) or 0) for key in RANK_ENV)


def dist_initialized() -> bool:
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# Overrides a run name leaves out: already in it (the backbone and data choices, the seed), or saying
# where and how it ran rather than what it is (these keys and everything under them).
_IN_NAME = ("backbone", "data", "seed")
_UNNAMED = (
    *("logger", "trial", "hydra", "output_dir", "resume", "trainer.accelerator", "trainer.devices"),
    *("trainer.num_nodes", "trainer.strategy", "trainer.enable_progress_bar"),
)
# Hydra flags that pick the config: part of a job's command.
_CONFIG_FLAGS = ("--config-name", "-cn", "--config-dir", "-cd", "--config-path", "-cp")


def _job_overrides() -> tuple[list[str], int | None]:
    """This job's own overrides and, in a multirun, its number; ([], None) outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], None
    hc = HydraConfig.get()
    return list(hc.overrides.task), (hc.job.num if hc.mode == RunMode.MULTIRUN else None)


def _short(override: str) -> str:
    """``backbone.hidden_size=64`` -> ``hidden_size=64``; ``optimizer.lr=0.00123456`` -> ``lr=0.00123``."""
    key, _, value = override.lstrip("+~").partition("=")
    try:
        if any(c in value for c in ".eE") and value.lower() not in ("inf", "-inf", "nan"):
            value = f"{float(value):.3g}"
    except ValueError:
        pass
    return f"{key.rsplit('.', 1)[-1]}={value}"


def run_name(cfg: DictConfig) -> str:
    """``logger.run_name`` if set, else ``<backbone>-<data>-seed<seed>`` plus this job's other
    overrides, shortened, and ``-job<n>`` in a multirun or ``-trial<n>`` in a sweep: e.g.
    ``gru-sine-seed42-hidden_size=64-lr=0.003-trial7``. Never MLflow's random words, which
    ``seed_everything`` makes the same for every run."""
    if cfg.logger.run_name:
        return str(cfg.logger.run_name)
    overrides, job = _job_overrides()
    parts = [str(cfg.backbone.name), str(cfg.data.name), f"seed{cfg.seed}"]
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if key not in _IN_NAME and not any(key == k or key.startswith(k + ".") for k in _UNNAMED):
            parts.append(_short(override))
    if cfg.trial.number is not None:
        parts.append(f"trial{cfg.trial.number}")
    elif job is not None:
        parts.append(f"job{job}")
    name = "-".join(parts)
    return name if len(name) <= 200 else name[:190] + "..." + name[-7:]


def command() -> str:
    """The command that runs this job alone: ``python -m rnnlab`` with the config flags and this
    job's own overrides (in a multirun, not the whole sweep's command line; no ``trial.*``)."""
    import shlex

    overrides, _ = _job_overrides()
    argv = sys.argv[1:] if Path(sys.argv[0]).name in ("__main__.py", "rnnlab") else []
    if not overrides:
        overrides = [a for a in argv if not a.startswith("-")]
    flags: list[str] = []
    for i, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if name in _CONFIG_FLAGS:
            flags += [arg] if "=" in arg else argv[i : i + 2]
    overrides = [o for o in overrides if not o.lstrip("+~").startswith("trial.")]
    return " ".join(["python -m rnnlab", *(shlex.quote(a) for a in [*flags, *overrides])])
