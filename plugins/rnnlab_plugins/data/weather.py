"""Seattle's daily weather, 2012-2015 (1,461 days): a real multivariate series, read from the
vega_datasets package, which bundles the file: no network needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnlab.series import SeriesDataModule


class WeatherDataModule(SeriesDataModule):
    units = "degC"

    def __init__(self, *, target: str, features: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.features = list(features)
        self.units = "mm" if target == "precipitation" else "m/s" if target == "wind" else "degC"

    def load(self) -> tuple[np.ndarray, list[str]]:
        from vega_datasets import local_data

        frame = local_data.seattle_weather().sort_values("date")
        columns = [self.target, *(f for f in self.features if f != self.target)]
        return frame[columns].to_numpy(dtype=np.float64), columns
