"""Regularizer schemas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rnnlab.schemas import PluginConfig, check_range


@dataclass
class DropoutConfig(PluginConfig):
    """Dropout on the backbone's outputs before the head (Keras' Dropout after the last LSTM layer)."""

    name: str = "dropout"
    p: float = 0.2
    impl: ClassVar[str] = "rnnlab_plugins.regularizers.dropout:DropoutRegularizer"

    def __post_init__(self) -> None:
        check_range(self, "p", ge=0, lt=1)


@dataclass
class ARTARConfig(PluginConfig):
    """Activation (AR) and temporal activation (TAR) regularization, Merity et al. 2017:
    loss += alpha * mean(h_t^2) + beta * mean((h_t - h_{t-1})^2) on the last layer's outputs."""

    name: str = "ar_tar"
    alpha: float = 2.0
    beta: float = 1.0
    impl: ClassVar[str] = "rnnlab_plugins.regularizers.ar_tar:ARTARRegularizer"

    def __post_init__(self) -> None:
        check_range(self, "alpha", ge=0)
        check_range(self, "beta", ge=0)


@dataclass
class VariationalDropoutConfig(PluginConfig):
    """Variational ("locked") dropout, Gal & Ghahramani 2016: one dropout mask per sequence, the
    same at every step, on the inputs (``p_input``), between stacked layers (``p_hidden``) and on
    the last layer's outputs (``p_output``). Off in eval."""

    name: str = "variational_dropout"
    p_input: float = 0.0
    p_hidden: float = 0.2
    p_output: float = 0.2
    impl: ClassVar[str] = "rnnlab_plugins.regularizers.research:VariationalDropout"

    def __post_init__(self) -> None:
        for key in ("p_input", "p_hidden", "p_output"):
            check_range(self, key, ge=0, lt=1)


@dataclass
class WeightDropConfig(PluginConfig):
    """Weight drop (DropConnect on the hidden-to-hidden weights, Merity et al. 2017): a fresh mask on
    every ``weight_hh`` each forward pass; the fused kernel runs on the masked weights. Off in eval."""

    name: str = "weight_drop"
    p: float = 0.2
    impl: ClassVar[str] = "rnnlab_plugins.regularizers.research:WeightDrop"

    def __post_init__(self) -> None:
        check_range(self, "p", ge=0, lt=1)


@dataclass
class ZoneoutConfig(PluginConfig):
    """Zoneout (Krueger et al. 2017): each unit keeps its previous state with probability
    ``p_hidden`` (h) / ``p_cell`` (an LSTM's c) at every step; in eval, the expected mix
    ``p * previous + (1 - p) * new``. Needs explicit cells: a fused backbone switches to
    ``kernel=cell`` and says so in the log."""

    name: str = "zoneout"
    p_hidden: float = 0.05
    p_cell: float = 0.05
    impl: ClassVar[str] = "rnnlab_plugins.regularizers.research:Zoneout"

    def __post_init__(self) -> None:
        check_range(self, "p_hidden", ge=0, lt=1)
        check_range(self, "p_cell", ge=0, lt=1)


@dataclass
class EmbeddingDropoutConfig(PluginConfig):
    """Embedding dropout (Gal & Ghahramani 2016): for token inputs, drops whole token types from a
    sequence (every occurrence of a dropped character reads as zeros); on float features, whole
    input channels of a sequence. Off in eval."""

    name: str = "embedding_dropout"
    p: float = 0.1
    impl: ClassVar[str] = "rnnlab_plugins.regularizers.research:EmbeddingDropout"

    def __post_init__(self) -> None:
        check_range(self, "p", ge=0, lt=1)


@dataclass
class InputNoiseConfig(PluginConfig):
    """Gaussian noise of standard deviation ``sigma`` added to the inputs (in the scaled units the
    backbone reads). Off in eval."""

    name: str = "input_noise"
    sigma: float = 0.1
    impl: ClassVar[str] = "rnnlab_plugins.regularizers.research:InputNoise"

    def __post_init__(self) -> None:
        check_range(self, "sigma", ge=0)
