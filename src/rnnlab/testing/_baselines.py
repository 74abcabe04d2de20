"""The baseline contract."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnlab.schemas import BaselineConfig
from rnnlab.series import SeriesDataModule
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


def check_baseline(schema: Any, *, dm: Any = None) -> Any:
    """Build the baseline from ``schema``, fit it on ``dm`` (default: a :class:`ReferenceSeries`) and
    check its predictions: the shape of ``dm.targets("test")``, finite, and made from the past only
    (changing the series from a test origin on changes no forecast made before it; so the test
    split never reaches the fit either). Returns the baseline."""
    config = _instance(schema)
    label = _label(config)
    assert isinstance(config, BaselineConfig), f"{label}: a baseline schema subclasses rnnlab.schemas.BaselineConfig"
    dm = ReferenceSeries() if dm is None else dm
    plugin: Any = build("baseline", config)
    reason = plugin.why_not(dm)
    assert reason is None or (isinstance(reason, str) and reason), f"{label}: why_not() returns None or a reason"
    if reason is not None:
        return plugin
    plugin.fit(dm)
    pred = np.asarray(plugin.predict(dm, "test"), dtype=np.float64)
    target = dm.targets("test")
    assert pred.shape == target.shape, f"{label}: predictions {pred.shape}, targets {target.shape}"
    assert np.isfinite(pred).all(), f"{label}: predictions are not finite"
    assert isinstance(plugin.describe(), str) and plugin.describe(), f"{label}: describe() gives no text"
    scores = dm.score(pred, "test")
    assert scores and all(np.isfinite(v) for v in scores.values()), f"{label}: scores {scores}"

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
