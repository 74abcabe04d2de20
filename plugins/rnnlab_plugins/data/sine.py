"""A synthetic noisy sine: two periods mixed, plus Gaussian noise, generated from ``seed``."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnlab.series import SeriesDataModule


class SineDataModule(SeriesDataModule):
    def __init__(self, *, length: int, period: float, noise: float, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length
        self.period = period
        self.noise = noise
        self.data_seed = seed

    def load(self) -> tuple[np.ndarray, list[str]]:
        rng = np.random.default_rng(self.data_seed)
        t = np.arange(self.length, dtype=np.float64)
        clean = np.sin(2 * np.pi * t / self.period) + 0.5 * np.sin(2 * np.pi * t / (self.period * 3.7))
        return clean + self.noise * rng.standard_normal(self.length), ["sine"]
