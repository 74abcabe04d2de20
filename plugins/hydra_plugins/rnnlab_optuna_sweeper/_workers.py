"""Worker processes (``n_workers``): the same command started again, each running the trial loop on
the shared storage and writing into the main process's sweep dir. They die with the main process."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

WORKER_ENV = "RNNLAB_SWEEP_WORKER"  # set in worker processes: the sweep dir of the main process


def worker_of() -> str | None:
    """The main process's sweep dir when this process is a spawned worker, else None."""
    return os.environ.get(WORKER_ENV)


def _set_pdeathsig() -> None:  # runs in the worker child before exec: die with the sweep's main process
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def command() -> list[str]:
    """This process's command, started as the interpreter was (``-m module`` or a script) with the
    arguments as the app sees them now (``sys.argv``: rnnlab's CLI rewrites it without credentials)."""
    orig = list(sys.orig_argv)
    i = 1
    while i < len(orig):  # the interpreter's own options end at -m MODULE or at the script
        token = orig[i]
        if token == "-m":
            return [sys.executable, *orig[1 : i + 2], *sys.argv[1:]]
        if token in ("-W", "-X"):
            i += 2
        elif token.startswith("-"):
            i += 1
        else:
            return [sys.executable, *orig[1 : i + 1], *sys.argv[1:]]
    return [sys.executable, *orig[1:]]


def spawn(n: int, sweep_dir: Path) -> list[subprocess.Popen[bytes]]:
    argv = command()
    env = {**os.environ, WORKER_ENV: str(sweep_dir)}
    log.info("starting %d worker process(es): %s", n, " ".join(argv))
    return [subprocess.Popen(argv, env=env, preexec_fn=_set_pdeathsig) for _ in range(n)]


def wait(workers: list[subprocess.Popen[bytes]]) -> None:
    for p in workers:
        if p.wait() != 0:
            log.warning("worker pid %d exited with code %d", p.pid, p.returncode)


def stop(workers: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """Stopping early: SIGINT, so each worker marks its trials FAIL (stale) and they are re-run later."""
    for p in workers:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGINT)
    for p in workers:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
