"""The baseline contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rnnlab.schemas import BaselineConfig
from rnnlab.sequences import SequenceDataModule
from rnnlab.series import SeriesDataModule
from rnnlab.task import TaskSpec
from rnnlab.testing._config import _instance, _label, build


class ReferenceSeries(SeriesDataModule):
    """A seasonal series with a trend and noise (or ``values``), for checking baselines."""

    units = "units"

    def __init__(self, *, values: np.ndarray | None = None, **kwargs: Any) -> None:
        options = dict(window=16, horizon=2, stride=1, val_fraction=0.2, test_fraction=0.2, scaling="standard")
        options.update(season=12, batch_size=32, eval_batch_size=256)
        super().__init__(**{**options, **kwargs})
        if values is None:
            t = np.arange(600.0)
            values = 10 + 0.01 * t + np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.2, len(t))
        self.values = values

    def load(self) -> tuple[np.ndarray, list[str]]:
        return self.values, ["y"]


class ReferenceTask(SequenceDataModule):
    """Random sequences of any sequence kind (``kind``), for checking the baselines of that kind:
    class targets drawn from a skewed prior, values from a shifted normal."""

    def __init__(self, kind: str, *, classes: int = 4, steps: int = 6, seed: int = 0) -> None:
        super().__init__(batch_size=8, eval_batch_size=64)
        self.kind = kind
        self.classes = classes
        self.steps = steps
        self.seed = seed

    def load(self) -> dict[str, tuple[torch.Tensor, ...]]:
        rng = np.random.default_rng(self.seed)
        prior = np.arange(1, self.classes + 1) / np.arange(1, self.classes + 1).sum()
        per_step = self.kind.startswith("per_step") or self.kind == "language_model"
        splits: dict[str, tuple[torch.Tensor, ...]] = {}
        for split, n in (("train", 200), ("val", 40), ("test", 60)):
            shape = (n, self.steps) if per_step else (n,)
            if self.task().classification:
                y = torch.from_numpy(rng.choice(self.classes, size=shape, p=prior))
            else:
                y = torch.from_numpy(rng.normal(3.0, 2.0, (*shape, 1))).float()
            splits[split] = (torch.from_numpy(rng.integers(0, self.classes, (n, self.steps))), y)
        return splits

    def task(self) -> TaskSpec:
        classes = self.kind in ("classification", "per_step_classification", "language_model")
        return self.spec(input_size=self.classes, output_size=self.classes if classes else 1, tokens=True)


def reference_data(plugin: Any) -> Any:
    """A data module of a kind the baseline serves: the seasonal series for forecasting (and for
    baselines of every kind), a :class:`ReferenceTask` otherwise."""
    kinds = getattr(plugin, "kinds", ()) or ("forecast",)
    return ReferenceSeries() if "forecast" in kinds else ReferenceTask(kinds[0])


def check_baseline(schema: Any, *, dm: Any = None) -> Any:
    """Build the baseline from ``schema``, fit it on ``dm`` (default: a reference data module of the
    first kind it serves) and check its predictions: what ``dm.score`` takes (the shape of
    ``dm.targets("test")``; log-probabilities over the classes for a classification kind), finite,
    and made without the test split: for a series, changing it from a test origin on changes no
    forecast made before it (so the test split never reaches the fit either); for sequences,
    changing the test targets changes no prediction. Returns the baseline."""
    config = _instance(schema)
    label = _label(config)
    assert isinstance(config, BaselineConfig), f"{label}: a baseline schema subclasses rnnlab.schemas.BaselineConfig"
    plugin: Any = build("baseline", config)
    dm = reference_data(plugin) if dm is None else dm
    reason = plugin.why_not(dm)
    assert reason is None or (isinstance(reason, str) and reason), f"{label}: why_not() returns None or a reason"
    if reason is not None:
        return plugin
    plugin.fit(dm)
    pred = np.asarray(plugin.predict(dm, "test"), dtype=np.float64)
    target = dm.targets("test")
    task = dm.task()
    expected = (*target.shape, task.output_size) if task.classification else tuple(target.shape)
    assert pred.shape == expected, f"{label}: predictions {pred.shape}, expected {expected}"
    if task.classification:
        total = np.exp(pred).sum(-1)
        assert np.allclose(total, 1.0, atol=1e-6), f"{label}: predictions are no log-probabilities (sums {total.min()})"
    assert np.isfinite(pred).all(), f"{label}: predictions are not finite"
    assert isinstance(plugin.describe(), str) and plugin.describe(), f"{label}: describe() gives no text"
    scores = dm.score(pred, "test")
    assert scores and all(np.isfinite(v) for v in scores.values()), f"{label}: scores {scores}"

    if isinstance(dm, SequenceDataModule):
        x, y, *rest = dm.splits["test"]
        shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
        shuffled_copy = type(dm).__new__(type(dm))
        shuffled_copy.__dict__.update(dm.__dict__)
        shuffled_copy.splits = {**dm.splits, "test": (x, shuffled, *rest)}
        refit: Any = build("baseline", config)
        refit.fit(shuffled_copy)
        np.testing.assert_allclose(
            np.asarray(refit.predict(shuffled_copy, "test"), dtype=np.float64),
            pred,
            err_msg=f"{label}: its predictions changed when only the test targets changed (it fits on the test split)",
        )

    if isinstance(dm, SeriesDataModule):
        origins = dm.origins("test")
        cut = int(origins[len(origins) // 2])
        values = dm.history().copy()
        values[cut:] += 100.0 * (1 + np.arange(len(values) - cut))[:, None]
        changed = type(dm).__new__(type(dm))
        changed.__dict__.update(dm.__dict__)
        changed.splits, changed._origins = {}, {}
        changed.load = lambda: (values, ["y"])  # type: ignore[method-assign]
        again: Any = build("baseline", config)
        again.fit(changed)
        before = origins <= cut
        np.testing.assert_allclose(
            np.asarray(again.predict(changed, "test"))[before],
            pred[before],
            rtol=1e-9,
            atol=1e-9,
            err_msg=f"{label}: a forecast made before origin {cut} changed when rows from {cut} on changed "
            "(the baseline reads the future, or its fit reads the test split)",
        )
    return plugin
