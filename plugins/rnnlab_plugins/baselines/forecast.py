"""Classical forecasting baselines on a :class:`rnnlab.series.SeriesDataModule`'s own windows.

Each predicts the split's targets (N, horizon) in original units from what is observed before each
window's origin, and never reads the test split to fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnlab import forecast
from rnnlab.baseline import Baseline


def _why_not_series(dm: Any) -> str | None:
    from rnnlab.series import SeriesDataModule

    return None if isinstance(dm, SeriesDataModule) else "it forecasts a series; the data is no SeriesDataModule"


def _ready(dm: Any) -> None:
    """Set the data module up if nobody has yet: ``splits`` and ``train_end()`` are empty before."""
    if not dm.splits:
        dm.setup("fit")


class Persistence(Baseline):
    kinds = ("forecast",)
    label = "persistence (the last observed value)"

    def why_not(self, dm: Any) -> str | None:
        return _why_not_series(dm)

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        last = dm.history()[dm.origins(split) - 1, 0]
        return np.repeat(last[:, None], dm.horizon, axis=1)


class SeasonalNaive(Baseline):
    kinds = ("forecast",)

    def __init__(self, *, season: int) -> None:
        self.season = season
        self._m = season

    def why_not(self, dm: Any) -> str | None:
        reason = _why_not_series(dm)
        if reason:
            return reason
        m = self.season or dm.season
        _ready(dm)
        if m < 2:
            return "the series has no season (set data.season or baseline.seasonal_naive.season)"
        if m >= dm.train_end():
            return f"season {m} is longer than the training part ({dm.train_end()} steps)"
        return None

    def fit(self, dm: Any) -> None:
        self._m = self.season or dm.season

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        m = self._m or dm.season  # never 0 (lag 0 would read the targets), even without fit()
        if m < 1:
            raise ValueError("seasonal naive without a season: set data.season or baseline.seasonal_naive.season")
        k = np.arange(dm.horizon)
        lag = m * ((k // m) + 1)  # the same phase in the last season observed before the origin
        rows = dm.origins(split)[:, None] + k[None, :] - lag[None, :]
        return dm.history()[np.clip(rows, 0, None), 0]

    def describe(self) -> str:
        return f"seasonal naive (the value {self._m} steps earlier)"


class Drift(Baseline):
    kinds = ("forecast",)
    label = "drift (the last value plus the mean change per step so far)"

    def why_not(self, dm: Any) -> str | None:
        return _why_not_series(dm)

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        y = dm.history()[:, 0]
        t = dm.origins(split)
        last = y[t - 1]
        slope = (last - y[0]) / np.maximum(t - 1, 1)
        return last[:, None] + slope[:, None] * np.arange(1, dm.horizon + 1)[None, :]


class LinearAR(Baseline):
    kinds = ("forecast",)

    def __init__(self) -> None:
        self.coef: np.ndarray | None = None
        self.alpha = 0.0

    def why_not(self, dm: Any) -> str | None:
        return _why_not_series(dm)

    def fit(self, dm: Any) -> None:
        _ready(dm)
        (xt, yt), (xv, yv) = (dm.splits[s][:2] for s in ("train", "val"))
        self.coef, self.alpha = forecast.ridge(
            xt.double().numpy(), yt.double().numpy(), xv.double().numpy(), yv.double().numpy()
        )

    def predict(self, dm: Any, split: str = "test") -> np.ndarray:
        assert self.coef is not None, "fit() first"
        _ready(dm)
        x = dm.splits[split][0].double().numpy()
        return dm.unscale_target(forecast.lag_matrix(x) @ self.coef)

    def describe(self) -> str:
        return f"linear AR (ridge on the same windows, alpha {self.alpha:g} chosen on validation)"
