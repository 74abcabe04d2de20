"""Elman RNN: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h) (or relu)."""

from __future__ import annotations

from typing import Any

from torch import nn

from rnnlab_plugins.backbones._fused import FusedBackbone


class RNNBackbone(FusedBackbone):
    rnn_class = nn.RNN
    inapplicable_hooks = frozenset({"transform_cell_state"})  # no cell state

    def __init__(self, *, nonlinearity: str, **kwargs: Any) -> None:
        super().__init__(nonlinearity=nonlinearity, **kwargs)
