"""Shared body of the fused backbones: torch.nn.RNN / LSTM / GRU, batch first (cuDNN on GPU)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.backbone import Backbone


class FusedBackbone(Backbone):
    rnn_class: type[nn.RNNBase]

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        **rnn_kwargs: Any,
    ) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.hidden_size = hidden_size
        self.output_size = hidden_size * (2 if bidirectional else 1)
        # torch warns and ignores inter-layer dropout on a single layer; pass 0 instead.
        self.rnn = self.rnn_class(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            **rnn_kwargs,
        )

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        out, state = self.rnn(x, state)  # (B, T, D*H), (D*L, B, H) or a pair of them for LSTM
        return out, state

    def last_step(self, features: Tensor) -> Tensor:
        if not self.bidirectional:
            return features[:, -1]  # (B, H)
        # The backward direction has read the whole sequence at t=0, not at t=T-1.
        h = self.hidden_size
        return torch.cat([features[:, -1, :h], features[:, 0, h:]], dim=-1)  # (B, 2H)
