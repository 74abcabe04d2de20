"""rnnlab.testing: every registered plugin passes the contract a third party's must pass, and a plugin
that breaks it fails with a message saying what is wrong."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from rnnlab_plugins.backbones.config import GRUConfig
from rnnlab_plugins.backbones.gru import GRUBackbone
from rnnlab_plugins.data.config import SineConfig
from rnnlab_plugins.data.sine import SineDataModule
from rnnlab_plugins.regularizers.config import DropoutConfig
from rnnlab_plugins.regularizers.dropout import DropoutRegularizer
from torch import Tensor

from rnnlab import testing
from rnnlab.baseline import Baseline
from rnnlab.registry import REGISTRIES
from rnnlab.regularizer import Regularizer
from rnnlab.schemas import BaselineConfig, PluginConfig

HERE = __name__  # the broken plugins' ``impl`` is "<this module>:<Class>"


def _csv(tmp_path: Path) -> Any:
    from rnnlab_plugins.data.config import CSVConfig

    path = tmp_path / "series.csv"
    path.write_text("t,y,x\n" + "".join(f"{i},{(i * 7) % 13},{i % 5}\n" for i in range(300)))
    return CSVConfig(path=str(path), target="y", features=["x"], sort_by="t", window=8)


# Plugins whose schema has MISSING fields need values to be built; every other one runs on its defaults.
INSTANCES = {("data", "csv"): _csv}
PLUGINS = [(kind, name) for kind, registry in REGISTRIES.items() for name in registry.names()]


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=[f"{k}={n}" for k, n in PLUGINS])
def test_every_registered_plugin_passes_the_contract(kind, name, tmp_path):
    schema = REGISTRIES[kind].schema(name)
    has_missing = any(f.default == "???" for f in dataclasses.fields(schema))
    assert (kind, name) in INSTANCES or not has_missing, f"{kind} {name!r} has MISSING fields: add it to INSTANCES"
    config = INSTANCES[kind, name](tmp_path) if (kind, name) in INSTANCES else schema()
    testing.check_config_round_trip(schema)
    testing.check_plugin(kind, config)


@pytest.mark.parametrize("name", REGISTRIES["backbone"].names())
def test_every_backbone_passes_stacked_and_bidirectional(name):
    schema = REGISTRIES["backbone"].schema(name)
    options = {f.name for f in dataclasses.fields(schema)}
    wanted = {"hidden_size": 5, "num_layers": 3, "dropout": 0.1, "bidirectional": True}
    testing.check_backbone(schema(**{k: v for k, v in wanted.items() if k in options}))


def test_reference_backbone_passes_its_own_check():
    """The explicit-cell template ``check_regularizer`` uses calls every hook it declares."""

    @dataclass
    class ReferenceConfig(PluginConfig):
        name: str = "reference"
        hidden_size: int = 4
        impl: ClassVar[str] = "rnnlab.testing:ReferenceBackbone"

    testing.check_plugin("backbone", ReferenceConfig)


# ----------------------------------------------------------------------------- broken plugins


@dataclass
class LyingConfig(GRUConfig):
    name: str = "lying"
    impl: ClassVar[str] = f"{HERE}:LyingBackbone"


class LyingBackbone(GRUBackbone):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output_size += 1  # the head would be built one unit too wide


@dataclass
class StatelessConfig(GRUConfig):
    name: str = "stateless"
    impl: ClassVar[str] = f"{HERE}:StatelessBackbone"


class StatelessBackbone(GRUBackbone):
    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        return super().forward(x, None, lengths)  # drops the initial state


@dataclass
class LeakyConfig(GRUConfig):
    name: str = "leaky"
    impl: ClassVar[str] = f"{HERE}:LeakyBackbone"


class LeakyBackbone(GRUBackbone):
    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        return super().forward(x, state, None)  # runs over the padding


@dataclass
class DeadParameterConfig(GRUConfig):
    name: str = "dead"
    impl: ClassVar[str] = f"{HERE}:DeadParameterBackbone"


class DeadParameterBackbone(GRUBackbone):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unused = torch.nn.Parameter(torch.zeros(3))


@dataclass
class NoisyConfig(GRUConfig):
    name: str = "noisy"
    impl: ClassVar[str] = f"{HERE}:NoisyBackbone"


class NoisyBackbone(GRUBackbone):
    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        out, state = super().forward(x, state, lengths)
        return torch.nn.functional.dropout(out, 0.5, training=True), state  # dropout in eval mode too


@dataclass
class BoastingConfig(GRUConfig):
    name: str = "boasting"
    impl: ClassVar[str] = f"{HERE}:BoastingBackbone"


class BoastingBackbone(GRUBackbone):
    supported_hooks = frozenset({"transform_cell_state"})  # declared, never called


@dataclass
class SecondDefaultConfig(GRUConfig):
    name: str = "second_default"
    impl: ClassVar[str] = f"{HERE}:SecondDefaultBackbone"


class SecondDefaultBackbone(GRUBackbone):
    def __init__(self, input_size: int, hidden_size: int = 32, **kwargs: Any) -> None:  # the schema says 64
        super().__init__(input_size, hidden_size, **kwargs)


@dataclass
class UnimportableConfig(GRUConfig):
    name: str = "unimportable"
    impl: ClassVar[str] = "no_such_package.backbones:Missing"


@dataclass(kw_only=True)
class NoDefaultConfig(GRUConfig):
    name: str = "no_default"
    width: int


@dataclass
class ShapeChangingConfig(DropoutConfig):
    name: str = "shape_changing"
    impl: ClassVar[str] = f"{HERE}:ShapeChangingRegularizer"


class ShapeChangingRegularizer(DropoutRegularizer):
    def transform(self, features: Tensor) -> Tensor:
        return features[:, -1]  # (B, H): drops the time axis


@dataclass
class VectorPenaltyConfig(DropoutConfig):
    name: str = "vector_penalty"
    impl: ClassVar[str] = f"{HERE}:VectorPenaltyRegularizer"


class VectorPenaltyRegularizer(DropoutRegularizer):
    def penalty(self, features: Tensor, lengths: Tensor | None = None) -> Tensor | None:
        return features.pow(2).mean(dim=(1, 2))  # (B,), not a scalar


@dataclass
class PromisingConfig(SineConfig):
    name: str = "promising"
    length: int = 300
    impl: ClassVar[str] = "rnnlab_plugins.data.sine:SineDataModule"

    def metrics(self) -> tuple[str, ...]:
        return ("loss", "mae", "mape")  # the task reports mae and rmse only


@dataclass
class MisdescribedConfig(SineConfig):
    name: str = "misdescribed"
    length: int = 300
    impl: ClassVar[str] = f"{HERE}:MisdescribedDataModule"


class MisdescribedDataModule(SineDataModule):
    def task(self) -> Any:
        return dataclasses.replace(super().task(), input_size=2)  # the windows have one column


@dataclass
class PeekingConfig(BaselineConfig):
    name: str = "peeking"
    impl: ClassVar[str] = f"{HERE}:PeekingBaseline"


class PeekingBaseline(Baseline):
    """Forecasts with the mean of the whole series: it reads the future."""

    def predict(self, dm: Any, split: str = "test") -> Any:
        mean = dm.history()[:, 0].mean()
        return mean + 0 * dm.targets(split)


@dataclass
class MisshapenConfig(BaselineConfig):
    name: str = "misshapen"
    impl: ClassVar[str] = f"{HERE}:MisshapenBaseline"


class MisshapenBaseline(Baseline):
    def predict(self, dm: Any, split: str = "test") -> Any:
        return dm.targets(split)[:, :1]  # one step of two


BROKEN = [
    ("backbone", LyingConfig, "features have shape"),
    ("backbone", StatelessConfig, "two chunks with the final state handed over differ"),
    ("backbone", LeakyConfig, "padded steps"),
    ("backbone", DeadParameterConfig, "parameter unused gets no gradient"),
    ("backbone", NoisyConfig, "two eval-mode passes differ"),
    ("backbone", BoastingConfig, "never calls them"),
    ("config", SecondDefaultConfig, "defaults hidden_size=32 (SecondDefaultConfig says 64)"),
    ("config", UnimportableConfig, "does not import"),
    ("config", NoDefaultConfig, "width has no default"),
    ("regularizer", ShapeChangingConfig, "transform changes the feature shape"),
    ("regularizer", VectorPenaltyConfig, "penalty must be a scalar"),
    ("data", PromisingConfig, "metrics() declares ['mape']"),
    ("data", MisdescribedConfig, "inputs have shape"),
    ("baseline", PeekingConfig, "(the baseline reads the future, or its fit reads the test split)"),
    ("baseline", MisshapenConfig, "predictions (119, 1), expected (119, 2)"),
]


@pytest.mark.parametrize(("kind", "schema", "message"), BROKEN, ids=[s.__name__ for _, s, _ in BROKEN])
def test_a_broken_plugin_fails_with_a_message_that_says_why(kind, schema, message):
    with pytest.raises(AssertionError) as err:
        if kind == "config":
            testing.check_config_round_trip(schema)
        else:
            testing.CHECKS[kind](schema)
    assert message in str(err.value)
    assert schema.__name__ in str(err.value) or kind == "config"


def test_check_plugin_refuses_an_unknown_kind():
    with pytest.raises(
        ValueError, match="unknown plugin kind 'optimizer'; valid: backbone, data, regularizer, baseline"
    ):
        testing.check_plugin("optimizer", GRUConfig)


def test_import_needs_no_pytest():
    import subprocess
    import sys

    code = "import sys; sys.modules['pytest'] = None; import rnnlab.testing; print('ok')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "ok", res.stderr


class Zoneoutish(Regularizer):
    """Needs a per-step hook that no fused backbone calls."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.layers_seen: set[int] = set()

    def transform_cell_state(self, c: Tensor, c_prev: Tensor, layer: int) -> Tensor:
        self.layers_seen.add(layer)
        return torch.where(torch.rand_like(c) < self.p, c_prev, c) if self.training else c


@dataclass
class ZoneoutishConfig(DropoutConfig):
    name: str = "zoneoutish"
    impl: ClassVar[str] = f"{HERE}:Zoneoutish"


def test_a_regularizer_that_needs_a_per_step_hook_runs_on_the_reference_backbone():
    """check_regularizer trains on a backbone that calls every hook, so a zoneout-like regularizer
    is checked though no fused backbone calls ``transform_cell_state``."""
    reg = testing.check_plugin("regularizer", ZoneoutishConfig)
    assert reg.layers_seen == {0, 1}
