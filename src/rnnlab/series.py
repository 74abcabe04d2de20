"""Windowed forecasting over a (multivariate) series: the public base of every series data module.

A data module on a series subclasses :class:`SeriesDataModule` (implements ``load()``) and its schema
subclasses :class:`rnnlab.schemas.SeriesConfig` (adds the module's own options)::

    @dataclass
    class SunspotsConfig(SeriesConfig):
        name: str = "sunspots"
        impl: ClassVar[str] = "my_pkg.sunspots:SunspotsDataModule"

    class SunspotsDataModule(SeriesDataModule):
        units = "spots"

        def load(self):
            return values, ["sunspots"]  # (T,) or (T, C), column 0 is the target

The base does the rest: chronological train | val | test split, scaling fitted on the training part,
sliding windows, the TaskSpec, and the scores of any forecast of the test windows in original units
(``score``: MAE, RMSE, MASE, sMAPE, per step for horizon > 1), which the model and every baseline
plugin (:mod:`rnnlab.baseline`) go through. ``season`` (steps per seasonal cycle, 0 for none) sets
MASE's scale and the seasonal naive baseline; a module sets its own default in its schema.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from rnnlab import forecast
from rnnlab.data import InMemoryDataModule
from rnnlab.errors import ConfigError
from rnnlab.task import TaskSpec

log = logging.getLogger(__name__)

# Metrics are computed in float32 on the device: a squared error in original units must stay finite.
_LARGEST = 1e18


class SeriesDataModule(InMemoryDataModule):
    """Subclasses implement ``load() -> (values (T, C), column names)``; column 0 is the target.

    The series is split chronologically into train | val | test by target time. A window's inputs
    may reach back into the previous split (as they would in deployment); its targets never do.
    The scaler is fitted on the training part alone. Metrics are reported in original units, next
    to every applicable baseline's on the same test windows.
    """

    units = ""
    # the score that ranks baselines and the verdict (rnnlab.report)
    primary_metric = "rmse"

    def __init__(
        self,
        *,
        window: int,
        horizon: int,
        stride: int,
        val_fraction: float,
        test_fraction: float,
        scaling: str,
        season: int,
        batch_size: int,
        eval_batch_size: int,
        shuffle_seed: int = 0,
    ) -> None:
        # No defaults: they live in SeriesConfig alone, and Registry.build passes every field.
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, shuffle_seed=shuffle_seed)
        self.window = window
        self.horizon = horizon
        self.stride = stride
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.scaling = scaling
        self.season = season
        self._origins: dict[str, np.ndarray] = {}
        self._n_train = 0
        self._mean = np.zeros(1)
        self._scale = np.ones(1)
        self._n_columns = 0

    def load(self) -> tuple[np.ndarray, list[str]]:
        """The series: values (T,) or (T, C) with column 0 the target, and the column names."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        values, _columns = self.load()
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        self._check_values(values, _columns)
        n = len(values)
        n_test = round(n * self.test_fraction)
        n_val = round(n * self.val_fraction)
        n_train = n - n_val - n_test
        if n_train <= self.window + self.horizon or min(n_val, n_test) < self.horizon:
            raise ConfigError(
                "data.window",
                f"series of {n} points is too short for window {self.window} "
                f"and horizon {self.horizon} with val/test fractions "
                f"{self.val_fraction}/{self.test_fraction}",
            )
        train = values[:n_train]
        if self.scaling == "standard":
            self._mean, self._scale = train.mean(0), train.std(0)
        elif self.scaling == "minmax":
            self._mean, self._scale = train.min(0), train.max(0) - train.min(0)
        else:
            self._mean, self._scale = np.zeros(values.shape[1]), np.ones(values.shape[1])
        self._scale = np.where(self._scale > 0, self._scale, 1.0)
        scaled = (values - self._mean) / self._scale
        self._n_columns = values.shape[1]
        self._raw = values
        self._n_train = n_train
        bounds = {
            "train": (self.window, n_train),
            "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n),
        }
        for split, (start, stop) in bounds.items():
            self._origins[split] = np.arange(max(start, self.window), stop - self.horizon + 1, self.stride)
            x, y = self._windows(scaled, self._origins[split])
            self.splits[split] = (x, y)
        log.info(
            "series %s: %d points, %d columns; windows %s",
            type(self).__name__,
            n,
            self._n_columns,
            self.describe(),
        )

    def _check_values(self, values: np.ndarray, columns: list[str]) -> None:
        """Data that cannot give finite results is an error before training; a target that is
        constant where the model learns is a warning (every method is trivial there)."""
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).any(axis=1).sum())
            raise ConfigError("data", f"{bad} rows have missing or non-numeric values; clean the series first")
        peak = float(np.abs(values).max()) if values.size else 0.0
        if peak > _LARGEST:
            column = columns[int(np.abs(values).max(axis=0).argmax())] if columns else "a column"
            raise ConfigError(
                "data",
                f"values up to {peak:.3g} in {column!r} overflow float32 metrics (their squares exceed "
                f"{np.finfo(np.float32).max:.3g}); rescale the series first (e.g. divide by 1e6)",
            )
        target = values[:, 0]
        if np.ptp(target) == 0:
            raise ConfigError("data", f"the target {columns[0] if columns else ''!r} is constant: nothing to forecast")
        n_train = len(values) - round(len(values) * self.test_fraction) - round(len(values) * self.val_fraction)
        if n_train > 0 and np.ptp(target[:n_train]) == 0:
            log.warning("the target is constant on the training split; the model can only learn that constant")

    def _windows(self, scaled: np.ndarray, t: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows whose first target steps are ``t``: inputs (N, W, C), targets (N, horizon)."""
        steps = np.arange(-self.window, 0)
        x = scaled[t[:, None] + steps[None, :]]  # (N, W, C)
        y = scaled[t[:, None] + np.arange(self.horizon)[None, :], 0]  # (N, horizon)
        return torch.from_numpy(x).float(), torch.from_numpy(y).float()

    def task(self) -> TaskSpec:
        if not self.splits:
            self.setup("fit")
        return TaskSpec(
            input_size=self._n_columns,
            output_size=self.horizon,
            target="last",
            loss="mse",
            metrics=("mae", "rmse"),
            target_scale=(float(self._scale[0]),) * self.horizon,
            target_shift=(float(self._mean[0]),) * self.horizon,
            units=self.units,
            forecast=True,
        )

    # -- what baselines and scores read: the series in original units ------------------------------

    def history(self) -> np.ndarray:
        """The whole series in original units, (T, C), column 0 the target. A forecast for origin t
        may read rows before t only (``origins``)."""
        if not self.splits:
            self.setup("fit")
        return self._raw

    def origins(self, split: str) -> np.ndarray:
        """Each window's first target step (a row of ``history()``), in window order."""
        if not self.splits:
            self.setup("fit")
        return self._origins[split]

    def train_end(self) -> int:
        """The first row after the training part: fits may read rows before it."""
        if not self.splits:
            self.setup("fit")
        return self._n_train

    def targets(self, split: str) -> np.ndarray:
        """The split's targets in original units: (N, horizon)."""
        t = self.origins(split)
        return self._raw[t[:, None] + np.arange(self.horizon)[None, :], 0]

    def scale_target(self, values: np.ndarray) -> np.ndarray:
        return (values - self._mean[0]) / self._scale[0]

    def unscale_target(self, values: np.ndarray) -> np.ndarray:
        return values * self._scale[0] + self._mean[0]

    def mase_scale(self) -> float:
        """MASE's denominator: the in-sample seasonal naive MAE on the training part."""
        return forecast.mase_scale(self.history()[: self.train_end(), 0], self.season)

    def score(self, predictions: np.ndarray, split: str = "test") -> dict[str, float]:
        """Forecast scores of ``predictions`` (N, horizon), original units, against ``split``'s targets."""
        return forecast.scores(predictions, self.targets(split), self.mase_scale())

    def report_files(self, out_dir: Any, net: Any, results: Any, title: str) -> list[Any]:
        """The forecast plots (``rnnlab.plots.forecast_plots``): the test windows' forecasts beside
        the best baseline's, and the error by horizon step."""
        from rnnlab import plots

        return plots.forecast_plots(
            out_dir, self, results.predictions, results.baseline_predictions, results.best, title
        )

    def describe(self) -> dict[str, int]:
        return {**super().describe(), "season": self.season}
