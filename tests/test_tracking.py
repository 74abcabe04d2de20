"""Tracking against a real MLflow server on 127.0.0.1, and the errors when there is none."""

import pytest
from conftest import free_port, postgres_url
from mlflow.tracking import MlflowClient

from rnnlab.tracking import flatten, resolve_tracking_uri
from rnnlab.train import train


def test_runs_log_to_a_tracking_server(small_cfg, workdir, mlflow_server):
    metrics = train(small_cfg(f"logger.tracking_uri={mlflow_server}", "logger.experiment_name=served"))
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("served").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert client.get_experiment_by_name("served").tags["mlflow.experimentKind"] == "custom_model_development"
    assert runs[0].info.run_name == "lstm-sine-seed42"  # not MLflow's seeded random words
    assert runs[0].data.metrics["test/rmse"] == pytest.approx(metrics["test/rmse"])
    assert "config.yaml" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert not (workdir / "mlflow.db").exists()


def test_unreachable_server_is_one_line_before_training(workdir):
    from conftest import SMALL, run_cli

    port = free_port()  # nothing listens there
    res = run_cli([*SMALL, f"logger.tracking_uri=http://127.0.0.1:{port}"], workdir)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(
        f"rnnlab: error: logger.tracking_uri: cannot reach the MLflow server at http://127.0.0.1:{port}"
    )
    assert not (workdir / "outputs").exists() or not any((workdir / "outputs").rglob("*.ckpt"))


def test_relative_sqlite_uri_is_made_absolute(workdir):
    assert resolve_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{workdir}/mlflow.db"
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_flatten_gives_dotted_keys(small_cfg):
    flat = flatten(small_cfg("regularizer=[dropout]"))
    assert flat["backbone.hidden_size"] == "8"
    assert flat["regularizer.dropout.p"] == "0.2"
    assert flat["optimizer.betas"] == "[0.9, 0.999]"


def test_passwords_in_uris_are_never_logged_or_printed():
    from omegaconf import OmegaConf

    from rnnlab.lifecycle import scrub
    from rnnlab.tracking import config_yaml, ui_command

    uri = "postgresql://alice:s3cret@db.example:5432/mlflow"
    cfg = OmegaConf.create({"logger": {"tracking_uri": uri, "tags": {}}, "trial": {"storage": uri}, "seed": 1})
    flat = flatten(cfg)
    assert flat["logger.tracking_uri"] == "postgresql://alice:***@db.example:5432/mlflow"
    assert "s3cret" not in "".join(flat.values()) and "s3cret" not in config_yaml(cfg)
    assert flat["seed"] == "1"
    assert "s3cret" not in ui_command("https://bob:s3cret@mlflow.example")
    assert scrub(f"cannot connect to {uri}: refused", uri) == (
        "cannot connect to postgresql://alice:***@db.example:5432/mlflow: refused"
    )


def test_a_plain_postgresql_uri_works_as_the_tracking_store(small_cfg):
    """``postgresql://`` names psycopg (v3) to SQLAlchemy; with only psycopg2 installed (rnnlab's
    postgres extra) the tracking store is opened through it, as the Optuna storage is."""
    uri = postgres_url(db="rnnlab_plain_uri")
    assert uri.startswith("postgresql://")
    train(small_cfg(f"logger.tracking_uri={uri}", "logger.experiment_name=plain-uri", "trainer.max_epochs=1"))
    client = MlflowClient(resolve_tracking_uri(uri))
    runs = client.search_runs([client.get_experiment_by_name("plain-uri").experiment_id])
    assert runs and all(r.info.status == "FINISHED" for r in runs)


def test_a_history_keeps_the_last_value_logged_at_each_step(workdir):
    """A run stopped after logging an epoch but before saving its checkpoint does that epoch again
    when resumed, at the same step: curves keep the value training went on from."""
    import time

    from rnnlab.tracking import metric_history, resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri("sqlite:///mlflow.db"))
    run_id = client.create_run(client.create_experiment("resumed")).info.run_id
    t0 = int(time.time() * 1000)
    for step, value in [(10, 1.0), (20, 0.8), (30, 0.7)]:  # the first process: epochs 1-3
        client.log_metric(run_id, "val/loss", value, timestamp=t0 + step, step=step)
    for step, value in [(30, 0.65), (40, 0.6)]:  # resumed from epoch 2's checkpoint
        client.log_metric(run_id, "val/loss", value, timestamp=t0 + 1000 + step, step=step)
    history = metric_history(client, run_id, "val/loss")
    assert [(m.step, m.value) for m in history] == [(10, 1.0), (20, 0.8), (30, 0.65), (40, 0.6)]
    assert len(client.get_metric_history(run_id, "val/loss")) == 5  # the store keeps both
