"""data=electricity: half-hourly demand of England and Wales (Taylor 2003), read from pmdarima's data."""

import numpy as np
import pytest
from rnnlab_plugins.data.config import ElectricityConfig
from rnnlab_plugins.data.electricity import taylor_values

from rnnlab import testing
from rnnlab.registry import baselines, data_modules


def test_electricity_is_the_taylor_series():
    values = np.asarray(taylor_values())
    assert values.shape == (4032,)  # 12 weeks of 48 half-hours
    assert values[:4].tolist() == [22262.0, 21756.0, 22247.0, 22759.0]
    assert 15_000 < values.min() < values.max() < 60_000  # MW


def test_electricity_defaults():
    config = ElectricityConfig()
    assert (config.name, config.season, config.window) == ("electricity", 336, 336)
    dm = data_modules.create("electricity")
    dm.setup("fit")
    assert dm.units == "MW" and dm.season == 336
    assert len(dm.history()) == 4032
    assert dm.describe()["season"] == 336


def test_electricity_keeps_the_data_module_contract():
    testing.check_plugin("data", ElectricityConfig)


def test_seasonal_naive_beats_persistence_on_electricity():
    dm = data_modules.create("electricity")
    dm.setup("fit")
    rmse = {}
    for name in ("persistence", "seasonal_naive"):
        baseline = baselines.create(name)
        assert baseline.why_not(dm) is None
        baseline.fit(dm)
        rmse[name] = dm.score(baseline.predict(dm, "test"), "test")["rmse"]
    assert rmse["seasonal_naive"] < rmse["persistence"]
    assert rmse["persistence"] == pytest.approx(895.73, abs=0.01)
