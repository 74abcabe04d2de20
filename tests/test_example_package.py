"""The example third-party package (examples/rnnlab-indrnn) against rnnlab.testing, fast and without
installing it: its schemas are imported from its source tree and registered on throwaway registries,
so a change in rnnlab that breaks the example fails here first. The installed wheel is tested in
tests/test_install.py (-m slow)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from rnnlab import testing
from rnnlab.registry import Registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rnnlab-indrnn"
CONF = EXAMPLE / "src" / "rnnlab_indrnn" / "conf"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``rnnlab_indrnn.config`` from the source tree; sys.path and sys.modules restored afterwards."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    import rnnlab_indrnn.config

    yield rnnlab_indrnn.config
    for name in [m for m in sys.modules if m == "rnnlab_indrnn" or m.startswith("rnnlab_indrnn.")]:
        del sys.modules[name]


def test_the_example_registers_and_builds_through_a_registry(example):
    backbones = Registry("backbone", "rnnlab.testing.none")
    data = Registry("data", "rnnlab.testing.none")
    backbones.register("indrnn", example.IndRNNConfig)
    data.register("seattle_weather", example.SeattleWeatherConfig)
    net = backbones.create("indrnn", input_size=2, hidden_size=4)
    assert net.output_size == 4 and type(net).__name__ == "IndRNNBackbone"
    assert data.schema("seattle_weather")().metrics() == ("loss", "mae", "rmse")


def test_the_example_backbone_passes_the_contract(example):
    testing.check_plugin("backbone", example.IndRNNConfig)
    testing.check_plugin("backbone", example.IndRNNConfig(hidden_size=5, num_layers=3, dropout=0.1, recurrent_max=0.5))


def test_the_example_data_module_passes_the_contract(example):
    dm = testing.check_plugin("data", example.SeattleWeatherConfig(features=["temp_min"]))
    assert dm.task().input_size == 2 and dm.task().units == "degC"


def test_the_example_declares_its_plugins_and_presets():
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    entry_points = project["entry-points"]
    assert entry_points["rnnlab.backbones"] == {"indrnn": "rnnlab_indrnn.config:IndRNNConfig"}
    assert entry_points["rnnlab.data"] == {"seattle_weather": "rnnlab_indrnn.config:SeattleWeatherConfig"}
    assert entry_points["rnnlab.conf"] == {"rnnlab_indrnn": "rnnlab_indrnn.conf"}
    assert "rnnlab" in project["dependencies"]
    assert not (EXAMPLE / "src" / "hydra_plugins").exists()  # no Hydra plugin of its own


@pytest.mark.parametrize("preset", ["experiment/indrnn_weather.yaml", "sweep/indrnn_weather.yaml"])
def test_the_example_presets_set_only_options_its_schemas_have(example, preset):
    """Every key a preset sets under backbone/data is a field of the selected schema, and every value
    passes the schema's checks (the composed run is tested with the installed wheel)."""
    text = (CONF / preset).read_text()
    assert text.startswith("# @package _global_") and f"{preset.split('/')[0]}=indrnn_weather" in text
    node = yaml.safe_load(text)
    assert {"override /backbone": "indrnn"} in node["defaults"]
    assert {"override /data": "seattle_weather"} in node["defaults"]
    schemas = {"backbone": example.IndRNNConfig, "data": example.SeattleWeatherConfig}
    for group, schema in schemas.items():
        schema(**node.get(group, {}))  # unknown keys raise TypeError, bad values ConfigError
    params = node.get("hydra", {}).get("sweeper", {}).get("params", {})
    for key in params:
        group, _, field = key.partition(".")
        if group in schemas:
            assert field in schema_fields(schemas[group]), key


def schema_fields(schema: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(schema)}
