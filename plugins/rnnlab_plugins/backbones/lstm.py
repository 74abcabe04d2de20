"""Long short-term memory (Hochreiter & Schmidhuber 1997)."""

from __future__ import annotations

from torch import nn

from rnnlab_plugins.backbones._fused import FusedBackbone


class LSTMBackbone(FusedBackbone):
    rnn_class = nn.LSTM
    supported_hooks = FusedBackbone.supported_hooks | {"transform_cell_state"}
