"""Backbone schemas. Light: composing a config or listing plugins never imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rnnlab.schemas import PluginConfig, check_choice, check_range


@dataclass
class RecurrentConfig(PluginConfig):
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between stacked layers, as in torch.nn.LSTM; needs num_layers > 1
    # fused: torch's multi-layer module (cuDNN on GPU); cell: the same parameters run as explicit
    # cells step by step in Python (slower; for hooks inside the recurrence such as zoneout)
    kernel: str = "fused"

    def __post_init__(self) -> None:
        check_range(self, "hidden_size", ge=1)
        check_range(self, "num_layers", ge=1)
        check_range(self, "dropout", ge=0, lt=1)
        check_choice(self, "kernel", ("fused", "cell"))


@dataclass
class RNNConfig(RecurrentConfig):
    """Elman RNN: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h)."""

    name: str = "rnn"
    nonlinearity: str = "tanh"
    impl: ClassVar[str] = "rnnlab_plugins.backbones.rnn:RNNBackbone"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "nonlinearity", ("tanh", "relu"))


@dataclass
class LSTMConfig(RecurrentConfig):
    """LSTM (Hochreiter & Schmidhuber 1997). The forget gate's bias starts at ``forget_bias``
    (b_ih's forget rows; b_hh's are zeroed so the sum is exactly that): 1 by default, so the cell
    remembers from the first step (Jozefowicz et al. 2015). ``forget_bias=null`` keeps torch's own
    init (every bias uniform in +-1/sqrt(H))."""

    name: str = "lstm"
    forget_bias: float | None = 1.0
    impl: ClassVar[str] = "rnnlab_plugins.backbones.lstm:LSTMBackbone"


@dataclass
class GRUConfig(RecurrentConfig):
    name: str = "gru"
    impl: ClassVar[str] = "rnnlab_plugins.backbones.gru:GRUBackbone"


@dataclass
class LayerNormLSTMConfig(RecurrentConfig):
    """Layer-normalized LSTM (Ba, Kiros & Hinton 2016): layer norm on the input and recurrent gate
    pre-activations and on the cell, as explicit cells; the forget gate's bias starts at
    ``forget_bias`` (Jozefowicz et al. 2015). ``kernel`` must stay ``cell``: there is no fused one."""

    name: str = "ln_lstm"
    kernel: str = "cell"
    forget_bias: float = 1.0
    impl: ClassVar[str] = "rnnlab_plugins.backbones.ln_lstm:LayerNormLSTMBackbone"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "kernel", ("cell",))
