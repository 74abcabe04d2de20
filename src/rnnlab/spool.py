"""Training never waits on the tracker: records go to a local spool and a background thread sends them.

Every record a run makes after it is created (metrics, params, tags, artifacts, its final status) is
appended to ``<output dir>/mlflow-spool.jsonl`` - a local write - and a sender thread ships the
spool to MLflow in order. When the tracking server does not answer, training goes on, one warning
line says so, and the spool is sent as soon as the server answers again. A run that ends while
the server is still down waits for it ``logger.sync_timeout`` seconds, then leaves its spool and
prints the command that replays it: ``python -m rnnlab sync`` (every spool under a directory).

The spool is the record of what was sent: ``<spool>.sent`` holds the number of records that reached
the store, rewritten atomically after each one, so a replay neither loses nor repeats a record (a
record is resent only if the process died between sending it and writing that number).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPOOL_NAME = "mlflow-spool.jsonl"
# MLflow retries an HTTP request for minutes by default; the sender retries on its own schedule.
_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class Spool:
    """An append-only file of records for one MLflow run, and how many of them were sent."""

    def __init__(self, path: str | os.PathLike[str], tracking_uri: str | None = None, run_id: str | None = None):
        self.path = Path(path)
        self.sent_path = self.path.with_name(self.path.name + ".sent")
        self._lock = threading.Lock()
        if not self.path.exists():
            if tracking_uri is None or run_id is None:
                raise FileNotFoundError(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_line({"tracking_uri": tracking_uri, "run_id": run_id})
        header = json.loads(self.path.open().readline())
        self.tracking_uri: str = header["tracking_uri"]
        self.run_id: str = header["run_id"]

    def _write_line(self, record: dict[str, Any]) -> None:
        with self._lock, self.path.open("a") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()

    def append(self, op: str, **args: Any) -> None:
        """Add one record: ``op`` names a TrackedRun-level operation (see ``apply``)."""
        self._write_line({"op": op, "args": args})

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            lines = self.path.read_text().splitlines()[1:]
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash: the records before it stand
                break
        return out

    @property
    def sent(self) -> int:
        try:
            return int(self.sent_path.read_text())
        except (OSError, ValueError):
            return 0

    def mark_sent(self, n: int) -> None:
        tmp = self.sent_path.with_name(self.sent_path.name + ".tmp")
        tmp.write_text(str(n))
        os.replace(tmp, self.sent_path)

    def pending(self) -> int:
        return len(self.records()) - self.sent


def apply(client: Any, run_id: str, record: dict[str, Any]) -> None:
    """Send one spooled record with an ``MlflowClient``."""
    from mlflow.entities import Metric, Param, RunTag

    op, a = record["op"], record["args"]
    if op == "batch":
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in a.get("metrics", [])],
            params=[Param(k, str(v)) for k, v in a.get("params", [])],
            tags=[RunTag(k, str(v)) for k, v in a.get("tags", [])],
            synchronous=True,
        )
    elif op == "artifact":
        client.log_artifact(run_id, a["path"], a.get("artifact_path"))
    elif op == "artifacts":
        client.log_artifacts(run_id, a["path"], a.get("artifact_path"))
    elif op == "status":
        client.set_terminated(run_id, status=a["status"], end_time=a.get("end_time"))
    else:
        raise ValueError(f"unknown spool record {op!r}")


def unreachable(e: BaseException) -> bool:
    """A failure that says the store did not answer (retry later), not that the record is wrong."""
    import requests

    if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)):
        return True
    text = str(e)
    return any(s in text for s in ("Max retries exceeded", "Connection refused", "timed out", "503", "502", "504"))


def ship(spool: Spool, client: Any, stop: Callable[[], bool] = lambda: False) -> bool:
    """Send every record not yet sent, in order; False when the store stops answering (the rest waits).
    A record the store refuses for itself is logged and skipped, so it cannot block the others."""
    records = spool.records()
    n = spool.sent
    while n < len(records) and not stop():
        try:
            apply(client, spool.run_id, records[n])
        except Exception as e:
            if unreachable(e):
                return False
            log.warning("MLflow refused a record of run %s (%s): %s", spool.run_id, records[n]["op"], e)
        n += 1
        spool.mark_sent(n)
    return n >= len(records)


class Sender:
    """The background thread that ships a spool; ``notify`` after each append, ``close`` at the end."""

    def __init__(self, spool: Spool, client: Any) -> None:
        self.spool = spool
        self.client = client
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="rnnlab-mlflow-sender", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._idle.clear()
        self._wake.set()

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            self._wake.wait(timeout=delay if self._down_since else 5.0)
            self._wake.clear()
            done = ship(self.spool, self.client, self._stop.is_set)
            if done:
                if self._down_since is not None:
                    log.warning(
                        "MLflow answers again after %.0f s; the records kept meanwhile are sent",
                        time.time() - self._down_since,
                    )
                self._down_since, delay = None, 0.5
                if self.spool.pending() == 0:
                    self._idle.set()
            else:
                if self._down_since is None:
                    self._down_since = time.time()
                    log.warning(
                        "MLflow at %s does not answer; training goes on, records are kept in %s and sent "
                        "when it answers",
                        _public(self.spool.tracking_uri),
                        self.spool.path,
                    )
                delay = min(delay * 2, 5.0)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every record to be sent; True if they were."""
        deadline = time.time() + timeout
        while self.spool.pending() > 0 and time.time() < deadline:
            self.notify()
            self._idle.wait(timeout=min(0.5, max(deadline - time.time(), 0.01)))
        return self.spool.pending() == 0

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)


def _public(uri: str) -> str:
    from rnnlab.stores import redact

    return redact(uri)


def quick_http_failures() -> None:
    """Make MLflow's HTTP client fail at once instead of retrying for minutes (the sender retries)."""
    for name, value in _HTTP_ENV.items():
        os.environ.setdefault(name, value)


def find(root: str | os.PathLike[str]) -> list[Path]:
    """Every spool under ``root``."""
    return sorted(Path(root).rglob(SPOOL_NAME))


def sync(root: str | os.PathLike[str] = ".", client_for: Callable[[str], Any] | None = None) -> int:
    """``python -m rnnlab sync``: replay every spool under ``root``; the number still not sent."""
    if client_for is None:
        from mlflow.tracking import MlflowClient

        client_for = MlflowClient
    left = 0
    spools = find(root)
    if not spools:
        print(f"rnnlab sync: no spooled runs under {Path(root).resolve()}")
    for path in spools:
        spool = Spool(path)
        before = spool.pending()
        if before == 0:
            continue
        done = ship(spool, client_for(spool.tracking_uri))
        after = spool.pending()
        left += after
        state = "all sent" if done else f"{after} left: MLflow at {_public(spool.tracking_uri)} does not answer"
        print(f"rnnlab sync: run {spool.run_id}: {before - after} of {before} records sent ({state})  [{path}]")
    return left
