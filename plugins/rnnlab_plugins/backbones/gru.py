"""Gated recurrent unit (Cho et al. 2014)."""

from __future__ import annotations

from torch import nn

from rnnlab_plugins.backbones._fused import FusedBackbone


class GRUBackbone(FusedBackbone):
    rnn_class = nn.GRU
    inapplicable_hooks = frozenset({"transform_cell_state"})  # no cell state
