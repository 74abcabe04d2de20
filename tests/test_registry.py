from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from rnnlab.config import list_groups
from rnnlab.errors import ConfigError
from rnnlab.registry import REGISTRIES, Registry, backbones
from rnnlab.schemas import PluginConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_builtins_are_registered_through_entry_points():
    assert backbones.names() == ["gru", "lstm", "rnn"]
    assert {"temperature", "sine", "csv"} <= set(REGISTRIES["data"].names())
    assert {"dropout", "ar_tar"} <= set(REGISTRIES["regularizer"].names())


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_plugin_has_a_config_and_every_config_a_plugin(kind):
    registry = REGISTRIES[kind]
    yaml_names = list_groups()[kind]
    assert sorted(yaml_names) == registry.names(), f"conf/{kind}/*.yaml vs registered {kind} plugins"
    for name in yaml_names:
        text = (CONF / kind / f"{name}.yaml").read_text()
        assert f"/schema/{kind}/{name}@_here_" in text, f"conf/{kind}/{name}.yaml must use its schema"


def test_unknown_name_lists_the_installed_ones():
    with pytest.raises(ConfigError) as err:
        backbones.schema("lstn")
    assert str(err.value) == "backbone: unknown backbone 'lstn'; valid choices: gru, lstm, rnn"


def test_a_third_party_plugin_registers_and_builds():
    registry = Registry("backbone", "rnnlab.tests.none")

    @dataclass
    class TinyConfig(PluginConfig):
        name: str = "tiny"
        hidden_size: int = 4
        impl: ClassVar[str] = "rnnlab_plugins.backbones.gru:GRUBackbone"

    registry.register("tiny", TinyConfig)
    assert registry.names() == ["tiny"]
    net = registry.create("tiny", input_size=3, **TinyConfig().kwargs())
    assert net.output_size == 4


def test_register_rejects_a_schema_without_impl():
    @dataclass
    class NoImpl:
        x: int = 1

    with pytest.raises(TypeError, match="impl"):
        Registry("backbone", "rnnlab.tests.none").register("bad", NoImpl)
