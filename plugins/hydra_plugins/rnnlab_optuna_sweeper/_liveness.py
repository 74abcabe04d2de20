"""Exact trial counting across processes and machines: the study-wide lock, heartbeats, stale trials.

* Every worker runs the same loop: under a study-wide lock it fails stale trials, counts the trials
  that use up the budget, and creates its next trials with ``study.ask`` only while the count is
  below ``n_trials``. The lock is ``flock`` on a file beside a SQLite or journal storage and a
  PostgreSQL advisory lock (MySQL: ``GET_LOCK``) for a server, so check-and-create is atomic across
  processes and machines; trial numbers themselves come from the storage.
* A trial counts unless it is FAIL *and* carries the ``rnnlab:stale`` mark: COMPLETE, PRUNED,
  RUNNING and trials that raised (FAIL with ``rnnlab:error``) all use a slot; a trial whose worker
  died does not, so its slot is re-run.
* A trial is stale when it is RUNNING and either its worker process on this host is gone (pid plus
  process start time, so a reused pid is not mistaken for it) or its heartbeat (a system attr the
  worker rewrites every ``heartbeat_interval`` seconds) is older than ``grace_period``. Our own
  heartbeat, not RDBStorage's, because Optuna's journal storage has none and we need the mark.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from rnnlab import stores
from rnnlab.processes import alive, process_start

log = logging.getLogger(__name__)

# Trial system attrs written by the sweeper.
HOST_ATTR, PID_ATTR, PSTART_ATTR = "rnnlab:host", "rnnlab:pid", "rnnlab:pid_start"
HEARTBEAT_ATTR = "rnnlab:heartbeat"
ERROR_ATTR = "rnnlab:error"  # the trial raised: FAIL, counts toward n_trials
STALE_ATTR = "rnnlab:stale"  # the worker died or was interrupted: FAIL, slot re-run
OVERRIDES_ATTR = "rnnlab:overrides"


class StudyLock:
    """A lock shared by every worker of a study, on this machine or others (see module docstring).
    ``storage_url`` None (an in-memory study) locks threads of this process only."""

    def __init__(self, storage_url: str | None, study_name: str) -> None:
        self.key = int.from_bytes(hashlib.sha1(f"rnnlab:{study_name}".encode()).digest()[:8], "big", signed=True)
        self.name = f"rnnlab:{study_name}"[:64]
        self._thread_lock = threading.Lock()
        self._path: Path | None = None
        self._engine: Any = None
        self._dialect = ""
        if storage_url is None:
            return
        path = stores.file_path(storage_url)
        if path is not None:
            self._path = Path(str(path) + ".rnnlab-lock")  # not ".lock": the journal storage uses it
        elif stores.scheme(storage_url) in ("postgresql", "mysql"):
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
            self._dialect = stores.scheme(storage_url)
        else:
            log.warning("no cross-process lock for storage %s: trial counts may overshoot", stores.redact(storage_url))

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._thread_lock:
            if self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with open(self._path, "a") as f:
                    fcntl.flock(f, fcntl.LOCK_EX)
                    try:
                        yield
                    finally:
                        fcntl.flock(f, fcntl.LOCK_UN)
            elif self._engine is not None:
                import sqlalchemy

                with self._engine.connect() as conn:
                    unlock: tuple[Any, dict[str, Any]]
                    if self._dialect == "postgresql":
                        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
                        unlock = sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key}
                    else:
                        conn.execute(sqlalchemy.text("SELECT GET_LOCK(:n, -1)"), {"n": self.name})
                        unlock = sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": self.name}
                    try:
                        yield
                    finally:
                        conn.execute(*unlock)
            else:
                yield


def owner_attrs() -> dict[str, Any]:
    """System attrs that tie a new trial to this worker process."""
    pid = os.getpid()
    return {
        HOST_ATTR: socket.gethostname(),
        PID_ATTR: pid,
        PSTART_ATTR: process_start(pid),
        HEARTBEAT_ATTR: time.time(),
    }


def counts_toward_budget(t: FrozenTrial) -> bool:
    return not (t.state == TrialState.FAIL and STALE_ATTR in t.system_attrs)


def fail_stale_trials(study: optuna.Study, grace_period: float) -> list[int]:
    """Mark RUNNING trials whose worker is gone as FAIL (+ ``rnnlab:stale``); their numbers."""
    storage, host, now = study._storage, socket.gethostname(), time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        sa = t.system_attrs
        reason = None
        if sa.get(HOST_ATTR) == host and sa.get(PID_ATTR) is not None and not alive(sa[PID_ATTR], sa.get(PSTART_ATTR)):
            reason = f"its worker (pid {sa[PID_ATTR]} on {host}) is gone"
        else:
            beat = sa.get(HEARTBEAT_ATTR)
            if beat is None and t.datetime_start is not None:
                beat = t.datetime_start.timestamp()
            if beat is not None and now - beat > grace_period:
                reason = f"no heartbeat for {now - beat:.0f} s (grace_period {grace_period:g} s)"
        if reason is None:
            continue
        try:
            storage.set_trial_system_attr(t._trial_id, STALE_ATTR, reason)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # it finished meanwhile
        log.warning("trial %d marked FAIL: %s; its slot will be re-run", t.number, reason)
        failed.append(t.number)
    return failed


def mark_stale(study: optuna.Study, trial_ids: Sequence[int], reason: str) -> None:
    """FAIL + ``rnnlab:stale`` for trials this worker gives up (interrupted): their slots are re-run."""
    for trial_id in trial_ids:
        with contextlib.suppress(Exception):
            study._storage.set_trial_system_attr(trial_id, STALE_ATTR, reason)
            study._storage.set_trial_state_values(trial_id, TrialState.FAIL)


class Heartbeat:
    """Stamps running trials every ``interval`` seconds from a daemon thread."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_ids: Sequence[int], interval: float) -> None:
        self.storage, self.trial_ids, self.interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rnnlab-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for trial_id in list(self.trial_ids):
                try:
                    self.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
                except optuna.exceptions.UpdateFinishedTrialError:
                    self.trial_ids.remove(trial_id)
                except Exception as e:  # a busy database must not kill the worker; the next beat retries
                    log.debug("heartbeat failed: %s", e)
