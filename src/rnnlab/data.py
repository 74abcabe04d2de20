"""Base of every data module: splits held in memory as tensors, batches cut by index slicing.

Per-sample collation through ``torch.utils.data.DataLoader`` costs ~2.7 us a sample and dominates
small steps; a batch here is ``x[idx]`` for a slice ``idx`` of a (shuffled) index tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from rnnlab.task import TaskSpec

log = logging.getLogger(__name__)

# On a GPU every split moves to the device once, when together they take at most this share of its
# free memory (the model, activations and optimizer need the rest); otherwise each batch is cut on
# the host into pinned memory, which Lightning's non-blocking copy overlaps with the step.
RESIDENT_SHARE = 0.25


def placement(nbytes: int, free_bytes: int, share: float | None = None) -> str:
    """``"device"`` if ``nbytes`` of data fit in ``share`` (default :data:`RESIDENT_SHARE`) of the
    device's ``free_bytes``, else ``"pinned"``."""
    return "device" if nbytes <= (RESIDENT_SHARE if share is None else share) * free_bytes else "pinned"


class TensorBatches:
    """An iterable of batches over equal-length tensors. Reshuffles on every pass, from ``seed``.

    Under DDP each rank takes every ``world_size``-th sample of the shuffled order, and every rank
    yields the same number of batches (a rank that ran out would hang the others' all-reduce).
    """

    def __init__(
        self,
        tensors: tuple[Tensor, ...],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        pin: bool = False,
    ) -> None:
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors need the same first dimension")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.pin = pin  # each batch in pinned host memory (for a non-blocking copy to a GPU)
        self._epoch = 0
        # The epoch number, when a trainer knows it: a resumed run then shuffles its epochs exactly
        # as an uninterrupted one (an own counter would start again at 0).
        self.epoch_of: Any = None
        self._per_rank = n // world_size if world_size > 1 else n

    def __len__(self) -> int:
        if self.drop_last:
            return self._per_rank // self.batch_size
        return -(-self._per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.tensors[0])
        if self.shuffle:
            epoch = self.epoch_of() if self.epoch_of is not None else self._epoch
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        self._epoch += 1
        if self.world_size > 1:
            order = order[self.rank :: self.world_size][: self._per_rank]
        order = order.to(self.tensors[0].device)  # data resident on a GPU: slice it there
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.pin:
                yield tuple(t[idx].pin_memory() for t in self.tensors)
            else:
                yield tuple(t[idx] for t in self.tensors)


class InMemoryDataModule(pl.LightningDataModule):
    """Base of every data module plugin.

    Subclasses fill ``self.splits`` ({"train"|"val"|"test": (inputs, targets, ...)}) in ``setup``
    and describe the task in ``task()``. ``score(predictions, split)`` may score any method's predictions
    on a split (the model's and every baseline plugin's), for the results table.

    Constructor contract: rnnlab builds a data module as ``Impl(**schema.kwargs(), shuffle_seed=seed)``
    (``Registry.build``): every field of its schema (a :class:`rnnlab.schemas.DataConfig`) as a keyword
    argument, plus ``shuffle_seed`` from the run's ``seed``. Defaults live in the schema only.
    """

    def __init__(self, *, batch_size: int, eval_batch_size: int, shuffle_seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle_seed = shuffle_seed
        self.splits: dict[str, tuple[Tensor, ...]] = {}
        self._placed: tuple[Any, str, dict[str, tuple[Tensor, ...]]] | None = None  # (device, how, splits)

    def task(self) -> TaskSpec:
        raise NotImplementedError

    def score(self, predictions: Any, split: str = "test") -> dict[str, float]:
        """The task's scores of ``predictions`` (as ``predict_with`` gives them) on ``split``; the model
        and every baseline go through it. A module without scores of its own returns {}."""
        return {}

    def predict_with(self, net: Any, split: str = "test") -> Any:
        """``net``'s outputs (original units for regression) for every sample of ``split``, in order,
        as a float64 numpy array; batched by ``eval_batch_size``, without gradients."""
        import numpy as np

        if not self.splits:
            self.setup("fit")
        was_training = net.training
        net.eval()
        device = next(net.parameters()).device
        outs = []
        with torch.no_grad():
            for batch in TensorBatches(self.splits[split], self.eval_batch_size):
                x = batch[0].to(device)
                lengths = batch[2].to(device) if len(batch) > 2 else None
                outs.append((net(x) if lengths is None else net(x, lengths)).double().cpu())
        net.train(was_training)
        return np.asarray(torch.cat(outs).numpy())

    def report_files(self, out_dir: Any, net: Any, results: Any, title: str) -> list[Any]:
        """Files written into ``out_dir`` at the end of a run, logged under the run's ``plots/``
        (forecast plots, a text sample): ``results`` is the run's :class:`rnnlab.report.Results`
        (predictions of the model and of every baseline), ``net`` the trained SequenceNet. None here."""
        return []

    def describe(self) -> dict[str, int]:
        """Sample counts per split, for the log and the run's params."""
        return {f"n_{split}": len(tensors[0]) for split, tensors in self.splits.items()}

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> TensorBatches:
        if not self.splits:
            self.setup("fit")
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        tensors, pin = self._on(trainer.strategy.root_device if trainer is not None else None, split)
        batches = TensorBatches(
            tensors,
            batch_size,
            shuffle=shuffle,
            seed=self.shuffle_seed,
            rank=rank,
            world_size=world,
            pin=pin,
        )
        if trainer is not None:
            batches.epoch_of = lambda: trainer.current_epoch
        return batches

    def _on(self, device: torch.device | None, split: str) -> tuple[tuple[Tensor, ...], bool]:
        """``(split's tensors, pin)`` for a trainer on ``device``: on a CUDA device, every split moved
        there once if they fit (:func:`placement`), else host tensors batched into pinned memory."""
        if device is None or device.type != "cuda":
            return self.splits[split], False
        if self._placed is None or self._placed[0] != device:
            nbytes = sum(t.nbytes for tensors in self.splits.values() for t in tensors)
            free = torch.cuda.mem_get_info(device)[0]
            how = placement(nbytes, free)
            log.info("data: %.1f MB, %s (%.0f MB free on %s)", nbytes / 2**20, how, free / 2**20, device)
            moved = {k: tuple(t.to(device) for t in v) for k, v in self.splits.items()} if how == "device" else {}
            self._placed = (device, how, moved)
        _, how, moved = self._placed
        return (moved[split], False) if how == "device" else (self.splits[split], True)

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", self.eval_batch_size, shuffle=False)
