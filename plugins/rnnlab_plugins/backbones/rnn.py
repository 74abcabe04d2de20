"""Elman RNN: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h) (or relu)."""

from __future__ import annotations

from torch import nn

from rnnlab_plugins.backbones._fused import FusedBackbone


class RNNBackbone(FusedBackbone):
    rnn_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, nonlinearity=nonlinearity)
