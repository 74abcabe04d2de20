"""Hourly air temperature in 2010 for San Francisco or Seattle (8,759 points, degrees Fahrenheit),
read from the vega_datasets package, which bundles the files: no network needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnlab.series import SeriesDataModule


class TemperatureDataModule(SeriesDataModule):
    units = "degF"

    def __init__(self, *, city: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.city = city

    def load(self) -> tuple[np.ndarray, list[str]]:
        from vega_datasets import local_data

        frame = local_data.sf_temps() if self.city == "sf" else local_data.seattle_temps()
        frame = frame.sort_values("date")
        return frame["temp"].to_numpy(dtype=np.float64), ["temp"]
