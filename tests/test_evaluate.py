"""``rnnlab evaluate RUN_ID``: a logged run's model tested again, without training, in a child run;
on its own test split (the logged scores again) and on another data config; its bad inputs."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SMALL, run_cli
from mlflow.tracking import MlflowClient

from rnnlab import cli, tracking
from rnnlab.composition import compose


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``rnnlab ARGS`` in this process: its exit status and its stderr lines (conftest drops handlers
    an earlier in-process run left on a closed capture)."""
    with pytest.raises(SystemExit) as stop:
        cli.main(args)
    return int(stop.value.code or 0), capsys.readouterr().err.strip().splitlines()


def _bare_run(workdir: Path, config_text: str, checkpoint: dict[str, Any] | None = None) -> str:
    """A run in the store with ``config_text`` as its config.yaml and, if given, ``checkpoint`` as
    its checkpoints/best.ckpt: a run that stopped before its test, or a crafted model."""
    uri = f"sqlite:///{workdir}/mlflow.db"
    client = tracking.open_client(uri)
    experiment = tracking.get_or_create_experiment(client, "rnnlab", uri)
    run_id = str(client.create_run(experiment).info.run_id)
    client.log_text(run_id, config_text, "config.yaml")
    if checkpoint is not None:
        path = workdir / "crafted" / "best.ckpt"
        path.parent.mkdir(exist_ok=True)
        torch.save(checkpoint, path)
        client.log_artifact(run_id, str(path), "checkpoints")
    client.set_terminated(run_id, "FAILED")
    return run_id


def _children(client: MlflowClient, run_id: str) -> list[Any]:
    experiment = client.get_experiment_by_name("rnnlab").experiment_id
    return client.search_runs([experiment], f"tags.rnnlab.evaluation_of = '{run_id}'", order_by=["start_time"])


def evaluates_to_its_logged_scores(workdir: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``rnnlab evaluate RUN_ID`` (in this process) logs a child run with every test score the run
    logged, and prints them: for any task kind."""
    cli.main(["evaluate", run_id])
    out = capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    parent, (child,) = client.get_run(run_id), _children(client, run_id)
    assert child.info.status == "FINISHED"
    logged = {k: v for k, v in parent.data.metrics.items() if k.startswith(("test/", "baseline/"))}
    assert "test/loss" in logged and any(k.startswith("baseline/") for k in logged)
    for key, value in logged.items():
        assert child.data.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    loss_row = next(line for line in out.splitlines() if line.startswith("test/loss"))
    assert loss_row.split()[1] == f"{logged['test/loss']:.4f}"


@pytest.mark.slow  # a training run and two evaluations as processes, ~50 s
def test_evaluate_gives_the_logged_scores_again_and_scores_other_data(workdir, capsys):
    small = [a for a in SMALL if not a.startswith("logger.log_model")]  # the model logged: an independent check
    trained = run_cli(small, workdir)
    assert trained.returncode == 0, trained.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (parent,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    run_id = parent.info.run_id

    # its own test split: every logged score again, in a child run
    res = run_cli(["evaluate", run_id], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    used = res.stderr.strip().splitlines()[0]
    assert used.startswith(f"rnnlab evaluate: run {run_id} (") and "checkpoints/best.ckpt (epoch " in used
    assert "loaded weights-only; its MLflow model: m-" in used and used.endswith("; config: its config.yaml")
    (child,) = _children(client, run_id)
    assert child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == run_id
    assert child.data.tags["rnnlab.evaluated"] == "own test split"
    logged = {k: v for k, v in parent.data.metrics.items() if k.startswith(("test/", "baseline/"))}
    assert {"test/loss", "test/rmse", "test/mase", "baseline/linear_ar/test/rmse"} <= logged.keys()
    for key, value in logged.items():
        assert child.data.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    rmse_row = next(line for line in res.stdout.splitlines() if line.startswith("test/rmse"))
    assert rmse_row.split()[1] == f"{logged['test/rmse']:.4f}"
    assert "best baseline: " in res.stdout and f"a child of {run_id}" in res.stdout

    # another data config: a CSV series of another level and scale, scaled by its own training part
    n = 400
    t = np.arange(n)
    y = np.round(10 + 3 * np.sin(2 * np.pi * t / 37) + 0.3 * np.cos(t / 5), 6)  # as written below
    (workdir / "other.csv").write_text("y\n" + "\n".join(f"{v:.6f}" for v in y) + "\n")
    overrides = ["data=csv", "data.path=other.csv", "data.target=y"]
    res = run_cli(["evaluate", run_id, *overrides], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    other = _children(client, run_id)[-1]
    assert other.info.status == "FINISHED" and other.data.tags["rnnlab.evaluated"] == " ".join(overrides)
    assert other.data.params["data.name"] == "csv" and other.data.params["data.window"] == "16"  # the run's
    # by hand: the logged (pickled) net on the CSV's test windows, 15 % / 15 % / 70 % as the run split
    import mlflow.pytorch

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")  # not whatever an earlier test left set
    net = mlflow.pytorch.load_model(f"runs:/{run_id}/model")  # torch.export's module: its forward only
    train_scale, train_shift = float(net.target_scale[0]), float(net.target_shift[0])  # the sine's
    n_test = n_val = round(n * 0.15)
    n_train = n - n_test - n_val
    mean, std = y[:n_train].mean(), y[:n_train].std()
    origins = np.arange(n_train + n_val, n)
    windows = np.stack([(y[o - 16 : o] - mean) / std for o in origins])[:, :, None]  # (N, 16, 1)
    with torch.no_grad():
        out = net(torch.from_numpy(windows).float())[:, 0].double().numpy()  # in the sine's units
    scaled = (out - train_shift) / train_scale  # what the net computes before unscaling
    rmse = math.sqrt(np.mean((scaled * std + mean - y[origins]) ** 2))
    assert other.data.metrics["test/rmse"] == pytest.approx(rmse, rel=1e-5)
    persistence = math.sqrt(np.mean((y[origins - 1] - y[origins]) ** 2))
    assert other.data.metrics["baseline/persistence/test/rmse"] == pytest.approx(persistence, rel=1e-9)

    # data the model does not fit: two input columns for a model of one
    (workdir / "two.csv").write_text("y,z\n" + "".join(f"{v:.6f},{v / 2:.6f}\n" for v in y))
    capsys.readouterr()  # MLflow's download bars above
    code, err = _main(
        ["evaluate", run_id, "data=csv", "data.path=two.csv", "data.target=y", "data.features=[z]"], capsys
    )
    assert code == 2 and err == [
        f"rnnlab: error: evaluate: the model of run {run_id[:8]} does not fit this data (data=csv data.path=two.csv "
        "data.target=y data.features=[z]): size mismatch for net.backbone.rnn.weight_ih_l0: copying a param with "
        "shape torch.Size([32, 1]) from checkpoint, the shape in current model is torch.Size([32, 2])"
    ]

    # a model that gives no finite result: the evaluation run ends FAILED, saying why, in one line
    state = torch.load(next((workdir / "outputs").rglob("best.ckpt")), weights_only=True)
    state["state_dict"] = {k: torch.full_like(v, float("nan")) for k, v in state["state_dict"].items()}
    config = client.download_artifacts(run_id, "config.yaml", str(workdir))
    broken = _bare_run(workdir, Path(config).read_text(), state)
    capsys.readouterr()
    code, err = _main(["evaluate", broken], capsys)
    assert code == 1 and len(err) == 2 and "no finite result" in err[1], err  # err[0]: what it used
    (failed,) = _children(client, broken)
    assert failed.info.status == "FAILED" and "NonFiniteResult" in failed.data.tags["rnnlab.error"]

    # `rnnlab compare` counts the trained run once: its evaluations repeat its scores, not new seeds
    res = run_cli(["compare", "--metric", "test/rmse", "--format", "csv"], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [row["n"] for row in rows] == ["1"], rows


def test_evaluate_bad_inputs_are_one_line_and_leave_no_run(workdir, capsys):
    code, err = _main(["evaluate", "0123abcd"], capsys)
    assert (code, err) == (
        2,
        [
            f"rnnlab: error: evaluate: no MLflow store at {workdir}/mlflow.db (run it where the run was "
            "started, or pass --tracking-uri)"
        ],
    )
    no_model = _bare_run(workdir, tracking.config_yaml(compose(list(SMALL))))
    capsys.readouterr()  # MLflow's lines as it created the store
    code, err = _main(["evaluate", "0123abcd"], capsys)
    assert (code, err) == (2, [f"rnnlab: error: evaluate: no run '0123abcd' in sqlite:///{workdir}/mlflow.db"])
    code, err = _main(["evaluate", no_model], capsys)
    assert code == 2 and len(err) == 1
    assert err[0] == (
        f"rnnlab: error: evaluate: run {no_model[:8]} has no model: it logged no checkpoints/best.ckpt (status "
        "FAILED; logger.log_checkpoint was off, or it failed before its test)"
    )
    code, err = _main(["evaluate", no_model, "data=nope"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("rnnlab: error: evaluate: data: unknown data 'nope'; ")
    assert "csv" in err[0] and "sine" in err[0]
    code, err = _main(["evaluate", no_model, "data.windw=3"], capsys)
    assert code == 2 and len(err) == 1 and "data.windw: unknown key; valid keys: " in err[0] and "window" in err[0]
    code, err = _main(["evaluate", no_model, "--tracking-uri"], capsys)
    assert code == 2 and err == ["rnnlab: error: evaluate: argument --tracking-uri: expected one argument"]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    assert len(client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])) == 1  # no child
