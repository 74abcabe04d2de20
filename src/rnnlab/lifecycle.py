"""The run's lifecycle around fit and test: ``with RunLifecycle(cfg, out_dir) as life: ...``.

On entry: DDP ranks > 0 are made to re-run this job (not a whole sweep), the DDP environment is
snapshot, the MLflow run is opened (rank 0 only), SIGTERM is turned into an exception. On exit, in
this order: the DDP environment and process group are put back as they were (the next job of an
in-process sweep starts clean), the SIGTERM handler is restored, the run is ended FINISHED, FAILED
(any exception, Ctrl-C and SIGTERM included) or, for a pruned Optuna trial, FINISHED with
``optuna.trial_state=PRUNED``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from omegaconf import DictConfig

from rnnlab import stores

# Set by Lightning's DDP launcher in this process; a later job of the same sweep must not inherit them,
# or Lightning would take its processes as started by someone else and wait for them.
DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the run is ended FAILED rather than left RUNNING."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated(f"received signal {signum}")


class RunLifecycle:
    """Opens, guards and closes one training run; ``run`` is the TrackedRun (None on ranks > 0)."""

    def __init__(self, cfg: DictConfig, out_dir: Path) -> None:
        self.cfg = cfg
        self.out_dir = out_dir
        self.run: Any = None
        self._ddp_env: dict[str, str | None] = {}
        self._dist_before = False
        self._previous_sigterm: Any = None
        self._restore_launcher: Any = None

    def __enter__(self) -> RunLifecycle:
        self._restore_launcher = ddp_ranks_run_this_job(self.out_dir.resolve())
        self._ddp_env = {k: os.environ.get(k) for k in DDP_ENV}
        self._dist_before = dist_initialized()
        if rank() == 0:
            try:
                self.run = open_run(self.cfg)
            except BaseException:
                if self._restore_launcher is not None:
                    self._restore_launcher()
                raise
        if _main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        status, state = "FINISHED", "COMPLETE"
        if exc is not None:
            status, state = "FAILED", "FAIL"
            if type(exc).__name__ == "TrialPruned":
                status, state = "FINISHED", "PRUNED"
            elif self.run is not None:
                error = f"{type(exc).__name__}: {exc}"
                self.run.set_tags({"rnnlab.error": scrub(error, self.cfg.logger.tracking_uri)[:5000]})
        try:
            self._teardown()
        finally:
            if self.run is not None:
                if self.cfg.trial.number is not None:
                    self.run.set_tags({"optuna.trial_state": state})
                self.run.end(status)

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
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)


def open_run(cfg: DictConfig) -> Any:
    """The MLflow run for ``cfg``, tagged with versions, plugins, the command and the Optuna trial."""
    from rnnlab import tracking

    lc = cfg.logger
    trial_tags = {}
    if cfg.trial.number is not None:
        trial_tags = {"optuna.trial_number": str(cfg.trial.number), "optuna.study_name": str(cfg.trial.study_name)}
    return tracking.TrackedRun(
        lc.tracking_uri,
        lc.experiment_name,
        lc.run_name,
        tags={
            **tracking.version_tags(),
            **dict(lc.tags),
            **trial_tags,
            "rnnlab.backbone": cfg.backbone.name,
            "rnnlab.data": cfg.data.name,
            "rnnlab.command": scrub(_command(), lc.tracking_uri),
        },
        parent_run_id=cfg.trial.mlflow_parent_run_id,
        flush_every=lc.flush_every_n_steps,
    )


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


def rank() -> int:
    """This process's local DDP rank (0 outside DDP)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))


def dist_initialized() -> bool:
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _command() -> str:
    import shlex

    argv = sys.argv[1:] if Path(sys.argv[0]).name in ("__main__.py", "rnnlab") else []
    return "python -m rnnlab " + " ".join(shlex.quote(a) for a in argv) if argv else "python -m rnnlab"
