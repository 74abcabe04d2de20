"""The data module contract."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnlab.schemas import DataConfig
from rnnlab.testing._config import _instance, _label, build

# ----------------------------------------------------------------------------- data modules


def check_data_module(schema: Any, *, seed: int = 0, batches: int = 2) -> Any:
    """Build the data module from ``schema`` (with ``shuffle_seed=seed``), set it up and check it
    against its ``task()``: split shapes, batch shapes and sizes, reproducible shuffling, finite
    inputs, ``score()`` keys (against ``schema.scores()``), and ``schema.metrics()`` within what the
    task reports. Returns it."""
    import pytorch_lightning as pl

    from rnnlab.task import TaskSpec

    config = _instance(schema)
    label = _label(config)
    assert isinstance(config, DataConfig), f"{label}: a data schema subclasses rnnlab.schemas.DataConfig"
    dm: Any = build("data", config, shuffle_seed=seed)
    assert isinstance(dm, pl.LightningDataModule) and hasattr(dm, "task"), (
        f"{label}: builds a {type(dm).__name__}, not a LightningDataModule with task()"
    )
    dm.setup("fit")
    task = dm.task()
    assert isinstance(task, TaskSpec), f"{label}: task() must return a rnnlab.task.TaskSpec, got {type(task).__name__}"

    reported = {"loss", *task.metrics}
    declared = set(config.metrics())
    assert "loss" in declared, f"{label}: metrics() must include 'loss'"
    assert declared <= reported, (
        f"{label}: metrics() declares {sorted(declared - reported)}, which the task does not report "
        f"(task: {sorted(reported)}); monitor/objective are checked against metrics() before a run"
    )

    def check_pair(where: str, x: Tensor, y: Tensor) -> None:
        if task.tokens:
            assert x.dim() == 2 and not x.is_floating_point(), (
                f"{label}: {where} token inputs have shape {tuple(x.shape)} {x.dtype}, expected integer ids (N, T)"
            )
            assert int(x.min()) >= 0 and int(x.max()) < task.input_size, (
                f"{label}: {where} token ids must lie in [0, input_size={task.input_size})"
            )
        else:
            assert x.dim() == 3 and x.size(-1) == task.input_size, (
                f"{label}: {where} inputs have shape {tuple(x.shape)}, expected (N, T, input_size={task.input_size})"
            )
        assert len(y) == len(x), f"{label}: {where} has {len(x)} inputs but {len(y)} targets"
        assert task.tokens or torch.isfinite(x).all(), f"{label}: {where} inputs are not finite"
        per_step = task.target == "per_step"
        classes = task.loss == "cross_entropy"
        expected: tuple[int, ...] = (x.size(1),) if per_step else ()
        expected += () if classes else (task.output_size,)
        assert tuple(y.shape[1:]) == expected, (
            f"{label}: {where} targets have shape {tuple(y.shape)}, expected (N, *{expected}) for target="
            f"{task.target!r}, loss={task.loss!r}, output_size={task.output_size}"
        )
        if classes:
            assert not y.is_floating_point() and int(y.min()) >= 0 and int(y.max()) < task.output_size, (
                f"{label}: {where} class targets must be integers in [0, {task.output_size})"
            )

    splits = getattr(dm, "splits", None)
    if splits:
        for split in ("train", "val", "test"):
            assert split in splits, f"{label}: no {split!r} split after setup()"
            assert len(splits[split][0]) > 0, f"{label}: the {split!r} split is empty"
            check_pair(f"split {split!r}", splits[split][0], splits[split][1])

    batch_size = getattr(dm, "batch_size", None)
    first = None
    for i, b in enumerate(dm.train_dataloader()):
        if i == batches:
            break
        assert isinstance(b, (tuple, list)) and len(b) in (2, 3), f"{label}: a batch is (x, y) or (x, y, lengths)"
        check_pair("a training batch", b[0], b[1])
        if batch_size is not None:
            assert len(b[0]) <= batch_size, f"{label}: a batch of {len(b[0])} exceeds batch_size={batch_size}"
        if len(b) == 3:
            lengths = b[2]
            assert lengths.shape == (len(b[0]),) and int(lengths.min()) >= 1 and int(lengths.max()) <= b[0].size(1), (
                f"{label}: lengths must be (B,) in [1, T]"
            )
        first = b if first is None else first
    assert first is not None, f"{label}: train_dataloader() yields no batch"
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        b = next(iter(loader), None)
        assert b is not None, f"{label}: {split}_dataloader() yields no batch"
        check_pair(f"a {split} batch", b[0], b[1])

    again = build("data", config, shuffle_seed=seed)
    again.setup("fit")
    repeat = next(iter(again.train_dataloader()))
    assert all(torch.equal(a, c) for a, c in zip(first, repeat, strict=True)), (
        f"{label}: the same shuffle_seed gives other training batches"
    )

    targets, score = getattr(dm, "targets", None), getattr(dm, "score", None)
    perfect = None
    if targets is not None:
        perfect = targets("test")
        if task.classification:  # logits that put all the mass on the right class
            import numpy as np

            perfect = np.eye(task.output_size)[perfect] * 50.0
    scores = score(perfect, "test") if perfect is not None and score is not None else {}
    assert isinstance(scores, dict), f"{label}: score() must return a dict"
    if scores:
        expected_scores = set(config.scores())
        assert set(scores) == expected_scores, (
            f"{label}: score() gives {sorted(scores)}, but the schema's scores() declares {sorted(expected_scores)}"
        )
        # the targets predict themselves: every error is zero, every accuracy one
        assert all(v == 0 for k, v in scores.items() if k.startswith(("mae", "mse", "rmse", "smape"))), (
            f"{label}: score(targets) is not zero: {scores}"
        )
        assert all(abs(v - 1) < 1e-6 for k, v in scores.items() if k in ("accuracy", "f1")), (
            f"{label}: score() of the targets' own classes is not 1: {scores}"
        )
        assert scores.get("loss", 0.0) < 1e-6, f"{label}: score() of the targets' own classes has a loss: {scores}"
    return dm
