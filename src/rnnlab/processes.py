"""Is the process that owns a record still alive? Used for MLflow runs and Optuna trials alike.

A pid alone is not enough (pids are reused): the owner is recorded as host, pid and the process's
start time, and compared with /proc (Linux). Light: no heavy imports.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), None if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has finished


def alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` of this host, started at ``start`` (None: any start), still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    now = process_start(pid)
    return now is not None and (start is None or now == start)
