"""data=weather: Seattle's daily weather, a real multivariate series forecast a week ahead."""

import numpy as np
import pytest
from rnnlab_plugins.data.config import WeatherConfig

from rnnlab import testing
from rnnlab.errors import ConfigError
from rnnlab.registry import data_modules


def test_weather_keeps_the_data_module_contract():
    testing.check_plugin("data", WeatherConfig)


def test_weather_windows_hold_every_column_and_a_week_of_targets():
    from vega_datasets import local_data

    frame = local_data.seattle_weather().sort_values("date")
    dm = data_modules.create("weather")
    dm.setup("fit")
    task = dm.task()
    assert (task.input_size, task.output_size, task.kind) == (4, 7, "forecast")
    assert dm.history().shape == (1461, 4)
    assert np.array_equal(dm.history()[:, 0], frame["temp_max"].to_numpy())  # column 0 is the target
    # a test window's targets are the next 7 days of temp_max after its origin, in degrees C
    t = dm.origins("test")[3]
    assert np.array_equal(dm.targets("test")[3], frame["temp_max"].to_numpy()[t : t + 7])
    # its inputs are the 28 days before, every column scaled by the training part's statistics
    x = dm.splits["test"][0][3].double().numpy()
    raw = dm.history()[t - 28 : t]
    train = dm.history()[: dm.train_end()]
    assert np.allclose(x, (raw - train.mean(0)) / train.std(0), atol=1e-5)


def test_weather_target_and_features_are_checked():
    with pytest.raises(ConfigError, match="target"):
        WeatherConfig(target="humidity")
    with pytest.raises(ConfigError, match="features"):
        WeatherConfig(features=["temp_min", "snow"])
    dm = data_modules.create("weather", target="wind", features=["wind", "precipitation"])
    dm.setup("fit")
    assert dm.task().input_size == 2 and dm.units == "m/s"
