"""Truncated BPTT (``model.tbptt_steps``): equal to full BPTT when a chunk holds the whole sequence,
equal to the textbook truncated loop when it does not (state carried and detached, a clipped
optimizer step a chunk), schedulers stepped, the guard watching every chunk, and training through
the CLI into a real MLflow store."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli

from rnnlab.data import TensorBatches
from rnnlab.guard import NonFiniteError, NonFiniteGuard
from rnnlab.train import _trainer, build

# The copy task with a delay of 6: sequences of 26 steps, a class at every step; SGD without momentum
# so the reference loop below is plain arithmetic.
COPY_DATA = ("data=copy", "data.delay=6", "data.n_train=32", "data.n_val=8", "data.n_test=8", "data.batch_size=16")
COMMON = (
    "backbone.hidden_size=8",
    "optimizer=sgd",
    "optimizer.lr=0.5",
    "optimizer.momentum=0",
    "optimizer.weight_decay=0",
    "trainer.max_epochs=1",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "logger.log_model=false",
)
COPY = (*COPY_DATA, *COMMON)
T = 26


@pytest.fixture
def copy_cfg(workdir):
    """``copy_cfg(*overrides, data=COPY_DATA)``: the real config of the small task above, composed."""
    from rnnlab.composition import compose

    return lambda *overrides, data=COPY_DATA: compose([*data, *COMMON, f"output_dir={workdir}/out", *overrides])


def _fit(cfg, out_dir, dtype=torch.float64):
    """Build ``cfg``'s model (float64), fit it with rnnlab's own Trainer flags; return the model and
    its parameters before training."""
    torch.manual_seed(0)
    dm, model = build(cfg)
    model.to(dtype)
    start = copy.deepcopy(model.net)
    _trainer(cfg, [NonFiniteGuard(check_every=2)], False, out_dir).fit(model, datamodule=dm)
    return model, start, dm


def _max_diff(a, b) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("backbone", ["lstm", "gru", "rnn"])
def test_a_chunk_as_long_as_the_sequence_is_full_bptt(backbone, copy_cfg, tmp_path):
    """k >= T: the same parameters after training as full BPTT (float64, within 1e-6), clipping on
    (at a norm small enough to fire on every step) in both: the Trainer's, then the model's own."""
    common = (f"backbone={backbone}", "trainer.gradient_clip_val=0.05")
    full, start, _ = _fit(copy_cfg(*common), tmp_path / "full")
    assert full.automatic_optimization
    for k in (T, 4 * T):
        truncated, start_k, _ = _fit(copy_cfg(*common, f"model.tbptt_steps={k}"), tmp_path / f"k{k}")
        assert not truncated.automatic_optimization
        assert _max_diff(start, start_k) == 0  # the same start
        assert _max_diff(truncated.net, full.net) < 1e-6
    assert _max_diff(full.net, start) > 1e-3  # training moved them: the comparison means something


def _textbook(net, dm, k: int, lr: float, clip: float | None, algorithm: str = "norm"):
    """Truncated BPTT written out by hand: the batches in the order rnnlab draws them, each cut into
    chunks of k steps; each chunk from the detached state the last one ended in, its own mean
    cross-entropy backpropagated, the gradient clipped, one SGD step."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    batches = TensorBatches(dm.splits["train"], dm.batch_size, shuffle=True, seed=dm.shuffle_seed)
    for x, y in batches:
        state = None
        for s in range(0, x.size(1), k):
            inputs = F.one_hot(x[:, s : s + k], net.vocab).to(torch.float64)  # (B, k, V)
            h, state = net.backbone(inputs, state)  # (B, k, H)
            logits = net.head(h)  # (B, k, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[:, s : s + k].reshape(-1))
            opt.zero_grad()
            loss.backward()
            if clip is not None and algorithm == "norm":
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            elif clip is not None:
                torch.nn.utils.clip_grad_value_(net.parameters(), clip)
            opt.step()
            state = tuple(t.detach() for t in state) if isinstance(state, tuple) else state.detach()
    return net


@pytest.mark.parametrize(("backbone", "algorithm"), [("lstm", "norm"), ("gru", "value")])
def test_chunks_shorter_than_the_sequence_are_the_textbook_loop(backbone, algorithm, copy_cfg, tmp_path):
    """k < T (26 steps in chunks of 10, 10 and 6): rnnlab's parameters after training equal the
    hand-written loop's (float64, within 1e-6), clipping included; the same loop without clipping
    ends elsewhere, so a run that did not clip would fail here."""
    clip = 0.05 if algorithm == "norm" else 0.002
    cfg = copy_cfg(
        f"backbone={backbone}",
        "model.tbptt_steps=10",
        f"trainer.gradient_clip_val={clip}",
        f"trainer.gradient_clip_algorithm={algorithm}",
    )
    model, start, dm = _fit(cfg, tmp_path / "run")
    expected = _textbook(copy.deepcopy(start), dm, k=10, lr=0.5, clip=clip, algorithm=algorithm)
    unclipped = _textbook(copy.deepcopy(start), dm, k=10, lr=0.5, clip=None)
    assert _max_diff(model.net, expected) < 1e-6
    assert _max_diff(model.net, unclipped) > 1e-3
    assert model.trainer.fit_loop.epoch_loop._batches_that_stepped == 2  # batches, each 3 optimizer steps
    assert model.trainer.global_step == 6


def test_schedulers_step_once_a_chunk_or_once_an_epoch(copy_cfg, tmp_path):
    """Lightning steps no scheduler under manual optimization: interval=step schedulers go once an
    optimizer step (a chunk), interval=epoch ones once an epoch, a plateau scheduler with its metric."""
    base = ("model.tbptt_steps=10", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5")
    per_chunk, _, _ = _fit(copy_cfg(*base, "scheduler.interval=step"), tmp_path / "a")
    assert per_chunk.optimizers().param_groups[0]["lr"] == pytest.approx(0.5 * 0.5**6)  # 2 batches x 3 chunks
    per_epoch, _, _ = _fit(copy_cfg(*base, "scheduler.interval=epoch", "trainer.max_epochs=3"), tmp_path / "b")
    assert per_epoch.optimizers().param_groups[0]["lr"] == pytest.approx(0.5 * 0.5**3)
    plateau, _, _ = _fit(copy_cfg("model.tbptt_steps=10", "scheduler=plateau", "trainer.max_epochs=3"), tmp_path / "c")
    assert plateau.lr_schedulers().last_epoch == 3  # stepped once an epoch (it counts its steps)


def test_a_resumed_run_ends_where_an_uninterrupted_one_ends(copy_cfg, tmp_path):
    """Stopped after 2 of 4 epochs and resumed from its checkpoint: the same parameters and learning
    rate as 4 epochs in one go (float64); the optimizer, the per-chunk scheduler and the data order
    come back with it."""
    base = ("model.tbptt_steps=10", "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.7")
    base += ("scheduler.interval=step", "trainer.gradient_clip_val=0.05", "optimizer.momentum=0.9")
    whole, _, _ = _fit(copy_cfg(*base, "trainer.max_epochs=4"), tmp_path / "whole")
    first, _, _ = _fit(copy_cfg(*base, "trainer.max_epochs=2"), tmp_path / "first")
    ckpt = tmp_path / "stopped.ckpt"
    first.trainer.save_checkpoint(ckpt)

    cfg = copy_cfg(*base, "trainer.max_epochs=4")
    torch.manual_seed(1)  # a different start: everything must come from the checkpoint
    dm, model = build(cfg)
    model.to(torch.float64)
    trainer = _trainer(cfg, [NonFiniteGuard(check_every=2)], False, tmp_path / "resumed")
    trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt))
    assert trainer.global_step == whole.trainer.global_step == 4 * 2 * 3  # epochs x batches x chunks
    assert _max_diff(model.net, whole.net) < 1e-9
    assert _max_diff(first.net, whole.net) > 1e-3  # half the training ends elsewhere
    lr = model.optimizers().param_groups[0]["lr"]
    assert lr == pytest.approx(whole.optimizers().param_groups[0]["lr"]) == pytest.approx(0.5 * 0.7**12)


@pytest.mark.parametrize(
    "data",
    [
        ("data=adding", "data.target=running", "data.length=30", "data.n_train=32"),  # float inputs, real targets
        ("data=chars", "data.max_chars=4000", "data.length=30", "data.sample_chars=0"),  # token ids, next token
    ],
)
def test_every_per_step_kind_trains_in_chunks(data, copy_cfg, tmp_path):
    """The other per-step kinds than copy's: per-step regression and a language model, each a batch
    of three chunks whose loss falls over a few epochs (full-size chunks: 30 steps in chunks of 10)."""
    sgd = ("optimizer.lr=0.05", "optimizer.momentum=0.9")
    cfg = copy_cfg("model.tbptt_steps=10", *sgd, "trainer.max_epochs=4", data=data)
    torch.manual_seed(0)
    dm, model = build(cfg)
    before = model.net.state_dict()["head.bias"].clone()
    trainer = _trainer(cfg, [NonFiniteGuard(check_every=2)], False, tmp_path)
    x, y = dm.splits["train"][:2]
    with torch.no_grad():
        initial = float(model.loss_of(model.net.outputs(x)[1], y))
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3 * trainer.fit_loop.epoch_loop._batches_that_stepped
    with torch.no_grad():
        assert float(model.loss_of(model.net.outputs(x)[1], y)) < initial
    assert not torch.equal(model.net.state_dict()["head.bias"], before)


def test_diagnostics_count_every_chunk_as_a_step(copy_cfg, tmp_path):
    """Diagnostics sum the gradient norms and clipping of every optimizer step: a chunk each."""
    import pytorch_lightning as pl

    from rnnlab.diagnostics import GradientFlow

    cfg = copy_cfg("model.tbptt_steps=10")
    torch.manual_seed(0)
    dm, model = build(cfg)
    flow = GradientFlow(every_n_epochs=100, samples=4, clip_val=1.0, run=None, out_dir=tmp_path)
    seen: list[float] = []

    class Read(pl.Callback):  # after GradientFlow's own hooks: what it has summed by each batch's end
        def on_train_batch_end(self, *args: object) -> None:
            seen.append(float(flow._sums["steps"]))

    _trainer(cfg, [NonFiniteGuard(check_every=2), flow, Read()], False, tmp_path).fit(model, datamodule=dm)
    assert seen == [3.0, 6.0]  # 2 batches of 3 chunks


def test_the_guard_judges_every_chunk_of_a_batch(copy_cfg, tmp_path):
    """The guard keeps one row a batch; with several optimizer steps in it (chunks) a non-finite
    gradient in any of them is kept there, not overwritten by a later finite one."""
    import pytorch_lightning as pl

    torch.manual_seed(0)
    _, model = build(copy_cfg("model.tbptt_steps=10"))
    guard = NonFiniteGuard(check_every=4)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    guard.on_train_start(trainer, model)
    for value in (float("inf"), 1.0, 1.0):  # three chunks: the first one's gradient explodes
        for p in model.parameters():
            p.grad = torch.full_like(p, value)
        guard.on_before_optimizer_step(trainer, model, None)
    guard.on_train_batch_end(trainer, model, {"loss": torch.tensor(1.0)}, None, 0)
    with pytest.raises(NonFiniteError, match=r"non-finite value in the gradient of net\.backbone"):
        guard.check()


def test_variable_length_batches_are_refused():
    """Padded batches (lengths) would need a length a chunk; refused in one line instead."""
    from rnnlab_plugins.backbones.config import GRUConfig

    from rnnlab.model import SequenceModel, SequenceNet
    from rnnlab.registry import backbones
    from rnnlab.task import TaskSpec

    task = TaskSpec(input_size=3, output_size=2, target="per_step", loss="cross_entropy", metrics=("accuracy",))
    net = SequenceNet(backbones.build(GRUConfig(hidden_size=4), input_size=3), task)
    model = SequenceModel(net, task, lambda params: torch.optim.SGD(params, lr=0.1), tbptt_steps=5)
    batch = (torch.randn(2, 8, 3), torch.zeros(2, 8, dtype=torch.long), torch.tensor([8, 5]))
    with pytest.raises(ValueError, match="equal-length sequences; this batch has lengths"):
        model.training_step(batch, 0)
    last = TaskSpec(input_size=3, output_size=2, target="last", loss="cross_entropy", metrics=("accuracy",))
    with pytest.raises(ValueError, match="needs a target at every step"):
        SequenceModel(SequenceNet(net.backbone, last), last, lambda params: None, tbptt_steps=5)


@pytest.mark.slow  # a CLI run: about 25 s of CPU (imports, MLflow, test and report)
def test_the_preset_trains_through_the_cli_into_mlflow(workdir):
    """``experiment=chars_tbptt``, shrunk: sequences of 400 characters in chunks of 50, through the
    CLI into a real SQLite store; the run is FINISHED, its training loss falls epoch by epoch, and it
    logs its checkpoint but no MLflow model."""
    import mlflow

    result = run_cli(
        [
            "experiment=chars_tbptt",
            "data.max_chars=16000",
            "data.length=400",
            "data.batch_size=8",
            "data.sample_chars=0",
            "model.tbptt_steps=50",
            "backbone.hidden_size=24",
            "trainer.max_epochs=2",
            "trainer.max_time=null",
            "trainer.val_check_interval=1.0",
            "trainer.log_every_n_steps=2",
            "trainer.accelerator=cpu",
        ],
        workdir,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.tbptt_steps"] == "50"
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "checkpoints" in logged and "model" not in logged  # the preset's logger.log_model=false
    history = client.get_metric_history(run.info.run_id, "train/loss_epoch")
    losses = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert len(losses) == 2
    # logged every 2 batches (5 of 10), not every 2 optimizer steps (8 a batch, never at an odd count)
    assert len(client.get_metric_history(run.info.run_id, "train/loss_step")) == 5
    assert losses[-1] < losses[0] - 0.2, losses  # nats a character; the first epoch starts at ln(V) ~ 4.4
