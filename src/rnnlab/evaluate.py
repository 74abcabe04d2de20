"""``rnnlab evaluate RUN_ID [overrides]``: test a logged run's model again, without training.

The run is rebuilt from its logged config (:mod:`rnnlab.logged`), on its own data or on the data the
overrides name (``data=csv data.path=load.csv``), and tested as its training run tested it: Lightning's
test loop on the test split, then the task's scores and every applicable baseline on the same test
samples (:func:`rnnlab.report.collect`), printed as the training run prints them.

The evaluation is an MLflow run of its own, a child of the evaluated run (``mlflow.parentRunId``),
so the evaluated run's record is never changed and each evaluation keeps the config it used. Its
metrics have the names a training run's have (``test/*``, ``baseline/*``), its params are its
config, and its tags say what was evaluated: ``rnnlab.evaluation_of`` (the run id) and
``rnnlab.evaluated`` (``own test split`` or the overrides). It ends FINISHED, or FAILED with
``rnnlab.error`` when the test fails; it is opened only after the config, the data and the model
loaded, so a bad input leaves no run behind.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError, first_line


def evaluate(run_id: str, tracking_uri: str, overrides: list[str]) -> dict[str, float]:
    """Evaluate run ``run_id`` (on ``overrides``' data, if any); print the table; return the metrics."""
    import pytorch_lightning as pl

    from rnnlab import logged, report, stores, tracking
    from rnnlab.lifecycle import process_tags, scrub
    from rnnlab.train import _quiet

    _quiet()
    loaded = logged.load(run_id, tracking_uri, overrides, command="evaluate")
    print(f"rnnlab evaluate: {loaded.describe()}", file=sys.stderr, flush=True)
    cfg, dm, model = loaded.cfg, loaded.dm, loaded.model
    evaluated = " ".join(overrides) if overrides else "own test split"
    parent = loaded.run
    experiment = loaded.client.get_experiment(parent.info.experiment_id).name
    out_dir = Path("outputs") / "evaluate" / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"eval-{parent.info.run_name or run_id[:8]}" + (f"-{cfg.data.name}" if overrides else "")
    child = tracking.TrackedRun(
        loaded.uri,
        experiment,
        name[:200],
        tags={
            **tracking.version_tags(),
            **process_tags(),
            "rnnlab.evaluation_of": run_id,
            "rnnlab.evaluated": scrub(evaluated, loaded.uri),
            "rnnlab.model_source": loaded.source,
            "rnnlab.backbone": str(cfg.backbone.name),
            "rnnlab.data": str(cfg.data.name),
            "rnnlab.command": scrub(" ".join(["rnnlab evaluate", run_id, *overrides]), loaded.uri),
            "rnnlab.output_dir": str(out_dir.resolve()),
        },
        parent_run_id=run_id,
        spool_dir=out_dir,
        sync_timeout=cfg.logger.sync_timeout,
    )
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends the child run too, KILLED
    try:
        child.log_params(tracking.flatten(cfg))
        child.log_params({f"data.{k}": str(v) for k, v in dm.describe().items()})
        child.log_text(tracking.config_yaml(cfg), "config.yaml")
        trainer = pl.Trainer(
            accelerator="auto",
            devices=1,
            precision=cfg.trainer.precision,
            limit_test_batches=cfg.trainer.limit_test_batches,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(out_dir),
        )
        tested = dict(trainer.test(model, datamodule=dm, verbose=False)[0])
        results = report.collect(cfg, trainer, tested, dm, model.net, started)
        for key in ("epochs", "train_seconds"):  # of a training run: this one trained nothing
            results.metrics.pop(key, None)
        results.metrics["eval_seconds"] = time.perf_counter() - started
        child.log_metrics(results.metrics)
        tags = {f"rnnlab.baseline.{n}": text for n, text in results.descriptions.items()}
        if results.best is not None:
            tags["rnnlab.baseline.best"] = results.best
        child.set_tags(tags)
        if results.predictions is not None:
            title = f"{cfg.backbone.name} of run {run_id[:8]} on {cfg.data.name}"
            for path in dm.report_files(out_dir / "plots", model.net, results, title):
                child.log_artifact(path, "plots" if path.suffix == ".png" else None)
    except BaseException as e:
        child.set_tags({"rnnlab.error": scrub(f"{type(e).__name__}: {e}", loaded.uri)[:5000]})
        child.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    child.end("FINISHED")
    task = dm.task()
    print(
        f"rnnlab: {cfg.backbone.name} of run {run_id} on {cfg.data.name} ({evaluated}), not retrained; "
        "test scores beside every baseline, on the same test samples\n"
        f"{report.results_text(results, task)}\n"
        f"MLflow run: {child.run_id} (evaluation, a child of {run_id}) in {stores.redact(loaded.uri)}",
        flush=True,
    )
    return results.metrics


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def main(args: list[str]) -> None:
    """``rnnlab evaluate RUN_ID [KEY=VALUE ...] [--tracking-uri URI]``."""
    from rnnlab.predict import OneLineParser
    from rnnlab.schemas import LoggerConfig

    parser = OneLineParser(
        prog="rnnlab evaluate",
        description="test a logged run's model again, on its own test split or on other data, without training",
    )
    parser.add_argument("run_id")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data=csv data.path=load.csv")
    parser.add_argument(
        "--tracking-uri", default=LoggerConfig.tracking_uri, help="the MLflow store (default: %(default)s)"
    )
    opts = parser.parse_args(args)
    try:
        evaluate(opts.run_id, opts.tracking_uri, opts.overrides)
    except RnnlabError as e:
        _exit(str(e), e.exit_code)
    except KeyboardInterrupt as e:
        _exit(f"evaluate: {e or 'interrupted'}; the evaluation run is marked KILLED", 130)
    except Exception as e:  # the evaluation run is FAILED already, with the error in rnnlab.error
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _exit(f"evaluate: {type(e).__name__}: {first_line(str(e))} (HYDRA_FULL_ERROR=1 shows the traceback)", 1)


def _exit(message: str, code: int) -> Any:
    print(f"rnnlab: error: {message}", file=sys.stderr)
    sys.exit(code)
