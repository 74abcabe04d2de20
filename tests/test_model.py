"""SequenceNet / SequenceModel: batches with lengths, per-step targets masked, hooks wired."""

import pytest
import pytorch_lightning as pl
import torch

from rnnlab.model import SequenceModel, SequenceNet
from rnnlab.registry import backbones
from rnnlab.task import TaskSpec


def _model(task, name="lstm", bidirectional=False):
    torch.manual_seed(0)
    backbone = backbones.create(name, input_size=task.input_size, hidden_size=6, bidirectional=bidirectional)
    net = SequenceNet(backbone, task)
    return SequenceModel(net, task, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))


PER_STEP_CLASSES = TaskSpec(
    input_size=2, output_size=4, target="per_step", loss="cross_entropy", metrics=("accuracy", "perplexity")
)
PER_STEP_REGRESSION = TaskSpec(input_size=2, output_size=1, target="per_step")
LAST = TaskSpec(input_size=2, output_size=1)


def _padded(task, lengths, T=6):
    torch.manual_seed(1)
    x = torch.randn(len(lengths), T, task.input_size)
    if task.loss == "cross_entropy":
        y = torch.randint(0, task.output_size, (len(lengths), T))
    elif task.target == "per_step":
        y = torch.randn(len(lengths), T, task.output_size)
    else:
        y = torch.randn(len(lengths), 1)
    for i, n in enumerate(lengths):  # junk beyond each length: it must never be read
        x[i, n:] = 1e6
        if task.target == "per_step":
            y[i, n:] = -7 if task.loss == "cross_entropy" else float("nan")
    return x, y, torch.tensor(lengths)


def _sums(model, batch):
    model._sums = {}
    model._eval_step(batch)
    return {k: v.item() for k, v in model._sums.items()}


@pytest.mark.parametrize("task", [PER_STEP_CLASSES, PER_STEP_REGRESSION, LAST], ids=["classes", "regression", "last"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_metrics_of_a_padded_batch_are_those_of_its_sequences(task, bidirectional):
    model = _model(task, bidirectional=bidirectional).eval()
    x, y, lengths = _padded(task, [6, 3, 1])
    together = _sums(model, (x, y, lengths))
    apart: dict[str, float] = {}
    for i, n in enumerate(lengths.tolist()):
        yi = y[i : i + 1, :n] if task.target == "per_step" else y[i : i + 1]
        for k, v in _sums(model, (x[i : i + 1, :n], yi)).items():
            apart[k] = apart.get(k, 0.0) + v
    assert together.keys() == apart.keys()
    for k in together:
        assert together[k] == pytest.approx(apart[k], rel=1e-5), k


def test_forward_takes_lengths():
    model = _model(LAST).eval()
    x, _, lengths = _padded(LAST, [2, 6])
    assert torch.allclose(model(x, lengths)[:1], model(x[:1, :2]), atol=1e-6)
    assert model(x[1:]).shape == (1, 1)


class _Batches:
    """One loader of ready-made batches (a plain list would be read as one loader per item)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


@pytest.mark.parametrize("task", [PER_STEP_CLASSES, PER_STEP_REGRESSION], ids=["classes", "regression"])
def test_training_on_padded_batches_never_reads_the_padding(task):
    """Padding holds NaN targets / invalid class ids and huge inputs; a masked loss stays finite."""
    model = _model(task)
    batches = _Batches([_padded(task, [6, 4, 2]), _padded(task, [5, 1, 3])])
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, train_dataloaders=batches, val_dataloaders=batches)
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert torch.isfinite(trainer.callback_metrics["val/loss"])


def test_two_tuple_batches_behave_as_before():
    """Without lengths nothing changes: the full-length result equals lengths = T."""
    model = _model(PER_STEP_REGRESSION).eval()
    x, y, _ = _padded(PER_STEP_REGRESSION, [6, 6])
    assert _sums(model, (x, y)) == pytest.approx(_sums(model, (x, y, torch.tensor([6, 6]))))
