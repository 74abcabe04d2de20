"""rnnlab-indrnn's own tests: the rnnlab plugin contract (rnnlab.testing), the IndRNN recurrence,
and the installed package's entry points. Run after installing the package: ``pytest``."""

from __future__ import annotations

import pytest
import torch
from rnnlab_indrnn.config import IndRNNConfig, SeattleWeatherConfig

from rnnlab.errors import ConfigError
from rnnlab.testing import build, check_plugin

BACKBONES = [
    IndRNNConfig(),
    IndRNNConfig(hidden_size=5, num_layers=3, dropout=0.2, recurrent_max=0.5),
    IndRNNConfig(hidden_size=4, num_layers=1, nonlinearity="tanh"),
]


@pytest.mark.parametrize("config", BACKBONES, ids=repr)
def test_indrnn_passes_the_backbone_contract(config):
    check_plugin("backbone", config)


@pytest.mark.parametrize(
    "config", [SeattleWeatherConfig(), SeattleWeatherConfig(features=["wind", "temp_min"])], ids=repr
)
def test_seattle_weather_passes_the_data_contract(config):
    dm = check_plugin("data", config)
    task = dm.task()
    assert task.input_size == 1 + len(config.features) and task.units == "degC"
    assert sum(dm.describe().values()) == 1461 - config.window  # every day but the first window is a target


def test_indrnn_is_the_independent_recurrence():
    """h_t = relu(W x_t + u * h_{t-1} + b), checked step by step."""
    torch.manual_seed(0)
    net = build("backbone", IndRNNConfig(hidden_size=3, num_layers=1), input_size=2)
    x = torch.randn(1, 5, 2)
    out, final = net(x)
    cell = net.cells[0]
    h = torch.zeros(3)
    for t in range(5):
        h = torch.relu(cell.weight_ih @ x[0, t] + cell.bias + cell.weight_hh * h)
        assert torch.allclose(out[0, t], h, atol=1e-6)
    assert torch.allclose(final[0, 0], h, atol=1e-6)


def test_recurrent_max_bounds_the_recurrent_weights():
    torch.manual_seed(0)
    config = IndRNNConfig(hidden_size=4, num_layers=1, recurrent_max=0.5)
    net = build("backbone", config, input_size=1)
    with torch.no_grad():
        net.cells[0].weight_hh.fill_(5.0)
        bounded = net(torch.ones(1, 6, 1))[0]
        net.cells[0].weight_hh.fill_(0.5)
        assert torch.equal(net(torch.ones(1, 6, 1))[0], bounded)


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: IndRNNConfig(hidden_size=0), "hidden_size"),
        (lambda: IndRNNConfig(nonlinearity="sigmoid"), "nonlinearity"),
        (lambda: IndRNNConfig(recurrent_max=0.0), "recurrent_max"),
        (lambda: SeattleWeatherConfig(features=["humidity"]), "features"),
    ],
)
def test_bad_options_name_the_key(make, key):
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.key == key


def test_installed_package_is_a_selectable_plugin_with_presets():
    """Through the entry points alone: rnnlab lists both plugins and finds the presets."""
    from rnnlab.composition import compose, list_groups
    from rnnlab.registry import backbones, data_modules
    from rnnlab.validation import validate

    assert "indrnn" in backbones.names() and "seattle_weather" in data_modules.names()
    groups = list_groups()
    assert "indrnn_weather" in groups["experiment"] and "indrnn_weather" in groups["sweep"]
    validated = validate(compose(["experiment=indrnn_weather"]))
    assert validated.backbone == IndRNNConfig(hidden_size=32, num_layers=2, recurrent_max=1.0)
    assert validated.data.features == ["temp_min", "precipitation", "wind"]
