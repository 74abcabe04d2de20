"""Long short-term memory (Hochreiter & Schmidhuber 1997)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rnnlab_plugins.backbones._fused import FusedBackbone


class LSTMBackbone(FusedBackbone):
    rnn_class = nn.LSTM
    supported_hooks = FusedBackbone.supported_hooks | {"transform_cell_state"}

    def __init__(self, *, forget_bias: float | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if forget_bias is None:  # torch's init: every bias uniform in +-1/sqrt(H)
            return
        forget = slice(self.hidden_size, 2 * self.hidden_size)  # gates i, f, g, o
        with torch.no_grad():
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_"):
                    p[forget] = forget_bias if name.startswith("bias_ih") else 0.0
