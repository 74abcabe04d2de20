"""Daily maximum temperature in Seattle, 2012-2015 (1,461 days, degrees Celsius), read from the
vega_datasets package, which bundles the file: no network needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnlab.series import SeriesDataModule


class SeattleWeatherDataModule(SeriesDataModule):
    """Forecast tomorrow's ``temp_max`` from the last ``window`` days (and the ``features`` columns).

    :class:`rnnlab.series.SeriesDataModule` does the chronological split, train-only scaling,
    windows, the TaskSpec and the persistence baseline; this class only loads the series.
    """

    units = "degC"

    def __init__(self, *, features: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.features = [c for c in features if c != "temp_max"]

    def load(self) -> tuple[np.ndarray, list[str]]:
        from vega_datasets import local_data

        frame = local_data.seattle_weather().sort_values("date")
        columns = ["temp_max", *self.features]  # column 0 is the target
        return frame[columns].to_numpy(dtype=np.float64), columns
