"""rnnlab.diagnostics: dL/dh_t through time per layer, the verdict, and ``rnnlab diagnose``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from mlflow.tracking import MlflowClient
from rnnlab_plugins.backbones.config import LSTMConfig, RNNConfig

from rnnlab import bptt
from rnnlab.diagnostics import verdict
from rnnlab.testing import build

ADDING = ["data=adding", "data.length=20", "data.n_train=256", "data.n_val=64", "data.n_test=64"]
TINY = ["backbone.hidden_size=8", "trainer.accelerator=cpu", "trainer.devices=1", "logger.log_model=false"]


def test_recorded_states_give_the_bptt_gradients_through_time():
    """A fused tanh RNN, recorded: the gradient at each h_t is rnnlab.bptt's dL/dh_t (the path
    through every later step included), not just the loss's direct use of that step's output."""
    torch.manual_seed(0)
    backbone = build("backbone", RNNConfig(hidden_size=5), input_size=3).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    v = torch.zeros(2, 6, 5, dtype=torch.float64)
    v[:, -1] = torch.randn(2, 5, dtype=torch.float64)  # a loss on the last step only
    with backbone.recording_layers() as layers:
        out = backbone(x)[0]
        loss = (out * v).sum()
        grads = torch.autograd.grad(loss, layers[0])
    rnn = backbone.rnn
    params = bptt.RNNParams(
        W_xh=rnn.weight_ih_l0.detach(),
        W_hh=rnn.weight_hh_l0.detach(),
        b_h=(rnn.bias_ih_l0 + rnn.bias_hh_l0).detach(),
        W_hy=torch.eye(5, dtype=torch.float64),
        b_y=torch.zeros(5, dtype=torch.float64),
    )
    reference = bptt.backward(x, params, v).h  # (B, T, H)
    torch.testing.assert_close(torch.stack(grads, 1), reference, rtol=0, atol=1e-12)
    assert reference[:, 0].abs().max() > 0  # earlier states do get a gradient


def test_recording_runs_stacked_layers_one_by_one_with_the_same_outputs():
    torch.manual_seed(1)
    backbone = build("backbone", LSTMConfig(hidden_size=4, num_layers=2), input_size=3)
    x = torch.randn(3, 5, 3)
    plain = backbone(x)[0]
    with backbone.recording_layers() as layers:
        recorded = backbone(x)[0]
    torch.testing.assert_close(recorded, plain, rtol=0, atol=1e-6)
    assert [len(layer) for layer in layers] == [5, 5] and layers[1][-1].shape == (3, 4)


@pytest.mark.parametrize(
    ("ratio", "kind"), [(1e-5, "vanishing"), (0.3, "healthy"), (5e3, "exploding"), (math.inf, "exploding")]
)
def test_verdict(ratio, kind):
    got, sentence = verdict(ratio, 0.25)
    assert got == kind and sentence.startswith(f"gradient flow: {kind} (") and "clipped on 25% of steps" in sentence


def test_a_run_logs_diagnostics_and_diagnose_reads_them_or_recomputes_them(workdir):
    from conftest import run_cli

    from rnnlab.composition import compose
    from rnnlab.train import train

    cfg = compose(
        [*ADDING, *TINY, "backbone=rnn", "diagnostics.enabled=true", "trainer.max_epochs=2", "output_dir=out"]
    )
    train(cfg)
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    history = client.get_metric_history(run.info.run_id, "diag/grad_h_ratio/layer0")
    assert [m.step for m in history] == [0, 1]  # every epoch
    for key in ("diag/grad_h_first/layer0", "diag/sigma_max/weight_hh_l0", "diag/clip_rate", "diag/saturation/layer0"):
        assert key in run.data.metrics, key
    assert not any(k.startswith("diag/gate_") for k in run.data.metrics)  # a plain RNN has no gates
    assert any(k.startswith("diag/grad_norm/net.backbone.rnn.weight_hh_l0") for k in run.data.metrics)
    sentence = run.data.tags["rnnlab.diagnostics.verdict"]
    assert sentence == verdict(history[-1].value, run.data.metrics["diag/clip_rate"])[1]
    out_dir = workdir / "out"
    saved = json.loads((out_dir / "diagnostics" / "grad_flow.json").read_text())
    assert len(saved["history"][-1]["layers"][0]["grad_h"]) == 20  # a norm per step
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/grad_flow.png", "plots/diagnostics.png"} <= artifacts

    res = run_cli(["diagnose", run.info.run_id], workdir)
    assert res.returncode == 0 and res.stdout.startswith(f"run {run.info.run_id[:8]}: {sentence}"), res.stderr


@pytest.mark.slow  # two more processes, ~25 s
def test_diagnose_recomputes_a_run_that_logged_no_diagnostics(workdir):
    """Rebuilt by its own command, its best checkpoint loaded, measured on the default number of
    training sequences (a run's ``diagnostics.samples``)."""
    from conftest import run_cli

    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    plain = run_cli(
        [*ADDING, "backbone=rnn", "backbone.hidden_size=8", "trainer.max_epochs=1", "logger.log_model=false"], workdir
    )
    assert plain.returncode == 0, plain.stderr[-2000:]
    (latest,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert not any(k.startswith("diag/") for k in latest.data.metrics)
    res = run_cli(["diagnose", latest.info.run_id], workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    from rnnlab.schemas import DiagnosticsConfig

    assert f"recomputed from its best checkpoint on {DiagnosticsConfig.samples} training sequences" in res.stdout
    assert res.stdout.split(": ", 1)[1].startswith("gradient flow: ")


def test_diagnose_an_unknown_run_or_store_is_one_line(workdir):
    from conftest import run_cli

    res = run_cli(["diagnose", "0123abcd"], workdir)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"rnnlab: error: diagnose: no MLflow store at {workdir}/mlflow.db (run it where the run was started, "
        "or pass --tracking-uri)"
    ]
    MlflowClient(f"sqlite:///{workdir}/mlflow.db").search_experiments()  # a store, without that run
    res = run_cli(["diagnose", "0123abcd"], workdir)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"rnnlab: error: diagnose: no run '0123abcd' in sqlite:///{workdir}/mlflow.db"
    ]


ADDING_50 = [
    "data=adding",
    "data.length=50",
    "data.n_train=4000",
    "data.n_val=200",
    "data.n_test=200",
    "data.batch_size=32",
    "backbone.hidden_size=32",
    "optimizer.lr=0.005",
    "trainer.max_epochs=15",
    "trainer.early_stopping.enabled=false",
    "diagnostics.enabled=true",
    "diagnostics.every_n_epochs=5",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "logger.log_model=false",
]


@pytest.mark.slow  # two trainings on the adding problem, about a minute each
def test_after_training_on_the_adding_problem_the_rnn_vanishes_and_the_lstm_does_not(workdir):
    """Issue 10's check: T = 50, the tanh RNN's ||dL/dh_1|| / ||dL/dh_T|| at least 100x below the
    LSTM's, with the verdicts vanishing and healthy."""
    from rnnlab.composition import compose
    from rnnlab.train import train

    ratios, verdicts = {}, {}
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    for backbone in ("rnn", "lstm"):
        train(compose([*ADDING_50, f"backbone={backbone}", f"output_dir={backbone}", f"logger.run_name={backbone}"]))
        (run,) = client.search_runs(
            [client.get_experiment_by_name("rnnlab").experiment_id], f"attributes.run_name = '{backbone}'"
        )
        ratios[backbone] = run.data.metrics["diag/grad_h_ratio/layer0"]
        verdicts[backbone] = run.data.tags["rnnlab.diagnostics.verdict"]
        gates = {k.split("/")[-1] for k in run.data.metrics if k.startswith("diag/gate_right/layer0/")}
        assert gates == (set() if backbone == "rnn" else {"input", "forget", "cell", "output"})
    assert ratios["lstm"] >= 100 * ratios["rnn"], ratios
    assert verdicts["rnn"].startswith("gradient flow: vanishing"), verdicts
    assert verdicts["lstm"].startswith("gradient flow: healthy"), verdicts


def test_diagnostics_off_add_no_callback_and_on_add_one(tmp_path):
    """'nothing when off' (README): without diagnostics.enabled no diagnostics code runs in a fit."""
    from rnnlab.composition import compose
    from rnnlab.diagnostics import GradientFlow
    from rnnlab.train import _callbacks

    def flows(*overrides):
        callbacks = _callbacks(compose(list(overrides)), tmp_path / "checkpoints", None)
        return [c for c in callbacks if isinstance(c, GradientFlow)]

    assert flows() == [] and len(flows("diagnostics.enabled=true")) == 1


@pytest.mark.parametrize("forget_bias, side", [(8.0, "right"), (-8.0, "left")])
def test_gate_saturation_counts_a_forget_gate_held_open_or_shut(workdir, forget_bias, side):
    """A forget bias of +-8 (sigmoid 0.9997 / 0.0003) saturates the forget gate on one side for
    every unit and step; the other gates, at torch's small init, mostly do not."""
    from rnnlab.composition import compose
    from rnnlab.diagnostics import measure
    from rnnlab.train import build

    cfg = compose([*ADDING, *TINY, "backbone=lstm", f"backbone.forget_bias={forget_bias}", "output_dir=out"])
    dm, model = build(cfg)
    batch = next(iter(dm.train_dataloader()))
    gates = measure(model, batch)["layers"][0]["gates"]
    assert set(gates) == {"input", "forget", "cell", "output"}
    assert gates["forget"][side] == 1.0
    assert gates["input"]["left"] + gates["input"]["right"] < 0.5
