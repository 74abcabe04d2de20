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
