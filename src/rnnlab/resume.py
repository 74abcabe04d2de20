"""``resume=``: continue an experiment where it stopped - the same MLflow run, the same output directory.

``resume`` takes a checkpoint path, an MLflow run id, or ``last`` (the most recent run of this
experiment in the store). The run goes on from its last completed epoch (``last.ckpt``, written every
epoch) in its own output directory, so the best checkpoint and early stopping carry on and the test
uses the true best; its MLflow run is continued (same id), not a new one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab import stores
from rnnlab.errors import ConfigError

OUTPUT_DIR_TAG = "rnnlab.output_dir"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def is_reference(value: str) -> bool:
    """``last`` or a run id (resolved through the store), not a file."""
    return value == "last" or bool(_RUN_ID.match(value))


@dataclass(frozen=True)
class Resume:
    checkpoint: Path
    out_dir: Path
    run_id: str | None  # the MLflow run that goes on; None: a checkpoint no run of this store knows


def resolve(value: str, tracking_uri: str, experiment_name: str) -> Resume:
    """Where ``resume=value`` continues from. ConfigError naming ``resume`` if it cannot."""
    from rnnlab import tracking

    db = stores.sqlite_path(stores.absolute(tracking_uri))
    if db is not None and not db.exists():  # do not create a store just to look in it
        if is_reference(value):
            raise ConfigError("resume", f"no run to resume: {db} does not exist")
        checkpoint = Path(value).expanduser().resolve()
        return Resume(checkpoint, _out_dir_of(checkpoint), None)
    client = tracking.open_client(stores.absolute(tracking_uri))
    experiment = client.get_experiment_by_name(experiment_name)
    if is_reference(value):
        run = _run(client, value, experiment, tracking_uri)
        tags = run.data.tags
        if OUTPUT_DIR_TAG not in tags:
            raise ConfigError("resume", f"run {run.info.run_id} was not made by this rnnlab (no {OUTPUT_DIR_TAG} tag)")
        out_dir = Path(tags[OUTPUT_DIR_TAG])
        checkpoint = out_dir / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            raise ConfigError("resume", f"run {run.info.run_id} has no checkpoint at {checkpoint}")
        return Resume(checkpoint, out_dir, run.info.run_id)
    checkpoint = Path(value).expanduser().resolve()
    out_dir = _out_dir_of(checkpoint)
    found = _latest(client, experiment, f"tags.`{OUTPUT_DIR_TAG}` = '{out_dir}'")
    return Resume(checkpoint, out_dir, found.info.run_id if found is not None else None)


def _latest(client: Any, experiment: Any, filter_string: str) -> Any:
    """The most recent run of ``experiment`` that matches ``filter_string``; None if there is none."""
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=filter_string, order_by=["attributes.start_time DESC"], max_results=1
    )
    return runs[0] if runs else None


def _out_dir_of(checkpoint: Path) -> Path:
    """``outputs/<d>/<t>`` for ``outputs/<d>/<t>/checkpoints/last.ckpt``."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def _run(client: Any, value: str, experiment: Any, tracking_uri: str) -> Any:
    where = f"experiment {experiment.name!r} in {stores.redact(tracking_uri)}" if experiment else ""
    if value == "last":
        run = _latest(client, experiment, f"tags.`{OUTPUT_DIR_TAG}` LIKE '%'")
        if run is None:
            raise ConfigError("resume", f"no run to resume in {where or stores.redact(tracking_uri)}")
        return run
    try:
        return client.get_run(value)
    except Exception:
        raise ConfigError("resume", f"no run {value} in {stores.redact(tracking_uri)}") from None
