from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from omegaconf import OmegaConf

from rnnlab import schemas
from rnnlab.composition import compose, list_groups
from rnnlab.errors import ConfigError
from rnnlab.registry import REGISTRIES, Registry, backbones
from rnnlab.schemas import PluginConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_builtins_are_registered_through_entry_points():
    assert backbones.names() == ["gru", "ln_lstm", "lstm", "rnn"]
    assert {"temperature", "sine", "csv"} <= set(REGISTRIES["data"].names())
    assert {"dropout", "ar_tar"} <= set(REGISTRIES["regularizer"].names())


PLUGINS = [(kind, name) for kind, registry in REGISTRIES.items() for name in registry.names()]
CORE = (
    [("optimizer", name, schema) for name, schema in schemas.OPTIMIZERS.items()]
    + [("scheduler", name, schema) for name, schema in schemas.SCHEDULERS.items()]
    + [
        ("trainer", "default", schemas.TrainerConfig),
        ("logger", "mlflow", schemas.LoggerConfig),
    ]
)


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=[f"{k}={n}" for k, n in PLUGINS])
def test_every_plugin_is_an_option_whose_composed_defaults_are_its_schemas(kind, name):
    """The schema is the one home of a plugin's defaults: what composes is exactly the dataclass."""
    schema = REGISTRIES[kind].schema(name)
    assert name in list_groups()[kind]
    many = REGISTRIES[kind].many
    cfg = compose([f"{kind}=[{name}]" if many else f"{kind}={name}"])
    node = cfg[kind][name] if many else cfg[kind]
    assert OmegaConf.get_type(node) is schema
    assert OmegaConf.to_container(node) == OmegaConf.to_container(OmegaConf.structured(schema))
    assert node.name == name


@pytest.mark.parametrize(("group", "name", "schema"), CORE, ids=[f"{g}={n}" for g, n, _ in CORE])
def test_core_options_compose_to_their_schemas(group, name, schema):
    cfg = compose([f"{group}={name}"])
    assert OmegaConf.to_container(cfg[group]) == OmegaConf.to_container(OmegaConf.structured(schema))


def test_conf_holds_presets_only():
    """Experiments, sweeps, trainer variants and launchers; no YAML restating a schema."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert groups <= {"experiment", "sweep", "trainer", "launcher"}, groups
    assert not (CONF / "trainer" / "default.yaml").exists()
    for path in CONF.rglob("*.yaml"):
        text = path.read_text()
        assert "/schema/" not in text, path


def test_plugins_command_shows_the_defaults_that_run():
    import contextlib
    import io

    from rnnlab.cli import print_plugins

    with contextlib.redirect_stdout(io.StringIO()) as out:
        print_plugins()
    cfg = compose(["data=temperature"])
    temperature = out.getvalue().split("\n  temperature ", 1)[1].split("\n  ", 1)[0]
    assert f"batch_size       int          = {cfg.data.batch_size}" in out.getvalue()
    assert "temperature" in temperature


def test_unknown_name_lists_the_installed_ones():
    with pytest.raises(ConfigError) as err:
        backbones.schema("lstn")
    assert str(err.value) == "backbone: unknown backbone 'lstn'; valid choices: gru, ln_lstm, lstm, rnn"


def test_a_third_party_plugin_registers_and_builds():
    registry = Registry("backbone", "rnnlab.tests.none")

    @dataclass
    class TinyConfig(PluginConfig):
        name: str = "tiny"
        hidden_size: int = 4
        num_layers: int = 1
        bidirectional: bool = False
        dropout: float = 0.0
        kernel: str = "fused"
        impl: ClassVar[str] = "rnnlab_plugins.backbones.gru:GRUBackbone"

    registry.register("tiny", TinyConfig)
    assert registry.names() == ["tiny"]
    net = registry.create("tiny", input_size=3, hidden_size=4)
    assert net.output_size == 4


def test_register_rejects_a_schema_without_impl():
    @dataclass
    class NoImpl:
        x: int = 1

    with pytest.raises(TypeError, match="impl"):
        Registry("backbone", "rnnlab.tests.none").register("bad", NoImpl)
