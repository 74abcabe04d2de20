"""rnnlab.plots: the forecast plots of a run on a series are written as valid PNGs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rnnlab.baseline import best, evaluate
from rnnlab.registry import baselines
from rnnlab.series import SeriesDataModule

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ArrayDataModule(SeriesDataModule):
    units = "degF"

    def __init__(self, values: np.ndarray, **options: Any) -> None:
        defaults: dict[str, Any] = {
            "window": 12,
            "horizon": 1,
            "stride": 1,
            "val_fraction": 0.15,
            "test_fraction": 0.15,
            "scaling": "standard",
            "season": 24,
            "batch_size": 64,
            "eval_batch_size": 512,
        }
        super().__init__(**{**defaults, **options})
        self.values = values

    def load(self) -> tuple[np.ndarray, list[str]]:
        return self.values, ["temperature"]


def daily(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n, dtype=np.float64)
    return 60 + 8 * np.sin(2 * np.pi * t / 24) + 0.02 * t + rng.standard_normal(n)


def check_png(path: Path) -> tuple[int, ...]:
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return tuple(image.shape)


@pytest.mark.parametrize(("horizon", "n"), [(1, 600), (3, 600), (1, 9000)])  # 9000: over 1000 test origins
def test_forecast_plots_write_pngs(tmp_path: Path, horizon: int, n: int) -> None:
    from rnnlab.plots import forecast_plots

    dm = ArrayDataModule(daily(n), horizon=horizon)
    fitted = {name: baselines.create(name) for name in baselines.names()}
    results = evaluate(fitted, dm)
    preds = {name: fitted[name].predict(dm) for name in results}
    model = dm.targets("test") + np.random.default_rng(1).normal(0, 0.8, dm.targets("test").shape)
    paths = forecast_plots(tmp_path / "plots", dm, model, preds, best(results, "rmse"), title="run 1")
    assert [p.name for p in paths] == ["forecast.png", "error_by_step.png"]
    assert all(p.parent == tmp_path / "plots" for p in paths)
    for path in paths:
        check_png(path)


def test_forecast_plots_without_baselines_or_best(tmp_path: Path) -> None:
    """No applicable baseline, a model that diverged on some windows, a (N,) prediction for horizon 1."""
    from rnnlab.plots import forecast_plots

    dm = ArrayDataModule(daily(400), season=0)
    model = dm.targets("test")[:, 0].copy()
    model[:5] = np.nan
    paths = forecast_plots(tmp_path, dm, model, {}, None)
    for path in paths:
        check_png(path)
    # a best baseline that is not among the predictions is left out, not an error
    paths = forecast_plots(tmp_path, dm, model, {"persistence": dm.targets("test") + 1.0}, "gone")
    for path in paths:
        check_png(path)


def test_forecast_plots_reject_misaligned_predictions(tmp_path: Path) -> None:
    from rnnlab.plots import forecast_plots

    dm = ArrayDataModule(daily(400), horizon=3)
    with pytest.raises(ValueError, match="persistence"):
        forecast_plots(tmp_path, dm, dm.targets("test"), {"persistence": dm.targets("test")[:-1]}, None)


def test_importing_plots_does_not_import_matplotlib() -> None:
    code = "import sys, rnnlab.plots; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
