"""Layer-normalized LSTM (Ba, Kiros & Hinton 2016), as explicit cells.

Per step, with LN a layer normalization (its own gain and bias) over the units::

    i, f, g, o = LN_x(W_ih x_t) + LN_h(W_hh h_{t-1}) + b
    c_t = s(f) c_{t-1} + s(i) tanh(g)          h_t = s(o) tanh(LN_c(c_t))

The forget gate's bias starts at ``forget_bias`` (1 by default, Jozefowicz et al. 2015), the other
biases at 0. Runs step by step (no fused kernel exists for it), so it calls every hook inside the
recurrence: weight drop on ``weight_hh``, zoneout on h and c, outputs between layers.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.backbone import Backbone
from rnnlab.regularizer import BACKBONE_HOOKS
from rnnlab_plugins.backbones._cells import reverse, scan


class _Direction(nn.Module):
    """One direction of one layer: its weights and its three layer norms."""

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float) -> None:
        super().__init__()
        bound = 1 / math.sqrt(hidden_size)  # torch.nn.LSTM's initialization
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-bound, bound))
        bias = torch.zeros(4 * hidden_size)
        bias[hidden_size : 2 * hidden_size] = forget_bias
        self.bias = nn.Parameter(bias)
        self.ln_ih = nn.LayerNorm(4 * hidden_size)
        self.ln_hh = nn.LayerNorm(4 * hidden_size)
        self.ln_c = nn.LayerNorm(hidden_size)

    def step(
        self, xi: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor, _: Tensor | None
    ) -> tuple[Tensor, Any, dict[str, Tensor]]:
        h, c = state
        gates = self.ln_ih(xi) + self.ln_hh(h @ w_hh.T) + self.bias
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(self.ln_c(c))
        return h, (h, c), {"input": i, "forget": f, "cell": g, "output": o}


class LayerNormLSTMBackbone(Backbone):
    supported_hooks = BACKBONE_HOOKS

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        forget_bias: float,
        kernel: str,
    ) -> None:  # no defaults: they live in the schema
        super().__init__()
        self.kernel = kernel  # always "cell": no fused kernel exists
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.dropout = dropout
        d = 2 if bidirectional else 1
        self.output_size = d * hidden_size
        self.num_layers = num_layers
        self.directions = d
        self.cells = nn.ModuleList(  # layer by layer, forward direction first
            _Direction(input_size if layer == 0 else self.output_size, hidden_size, forget_bias)
            for layer in range(num_layers)
            for _ in range(d)
        )

    def _cell(self, layer: int, direction: int) -> _Direction:
        return cast(_Direction, self.cells[layer * self.directions + direction])

    def recurrent_weights(self) -> dict[str, Tensor]:
        return {
            _name(layer, k): self._cell(layer, k).weight_hh
            for layer in range(self.num_layers)
            for k in range(self.directions)
        }

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        outs, final = self._run(x, state, lengths, record=self.recording())
        return outs[-1], final

    def layers(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> list[Tensor]:
        return self._run(x, state, lengths)[0]

    def _run(
        self, x: Tensor, state: Any, lengths: Tensor | None, record: list[list[Tensor]] | None = None
    ) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        batch, d = x.size(0), self.directions
        if state is None:
            zeros = x.new_zeros(d * self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        outs: list[Tensor] = []
        hs, cs = [], []
        h_in = x
        for layer in range(self.num_layers):
            layer_outs = []
            steps: list[Tensor] | None = None if record is None else []
            gates: list[dict[str, Tensor]] | None = None if record is None else []
            for k in range(d):
                cell = self._cell(layer, k)
                w_hh: Tensor = cell.weight_hh
                for reg in self.hooked("transform_recurrent_weight"):
                    w_hh = reg.transform_recurrent_weight(_name(layer, k), w_hh)
                row = layer * d + k
                seq = h_in if k == 0 else reverse(h_in, lengths)
                like = seq.new_empty(seq.size(1), batch, self.hidden_size)  # (T, B, H)
                out, (h, c) = scan(
                    cell.step,
                    seq,  # scan projects it: W_ih x_t, no bias (the step's LN_x then adds its own)
                    (state[0][row], state[1][row]),
                    (cell.weight_ih, w_hh, None, None),
                    lengths,
                    steps if k == 0 else None,
                    self._state_hook(layer),
                    (self.state_keep("h", like, layer), self.state_keep("c", like, layer)),
                    gates if k == 0 else None,
                )
                layer_outs.append(out if k == 0 else reverse(out, lengths))
                hs.append(h)
                cs.append(c)
            out = torch.cat(layer_outs, dim=2)  # (B, T, D*H)
            outs.append(out)
            if record is not None and steps is not None:
                record.append(steps)
                self.record_gates(gates)
            if layer < self.num_layers - 1:
                h_in = F.dropout(out, self.dropout, self.training)
                for reg in self.hooked("transform_layer_output"):
                    h_in = reg.transform_layer_output(h_in, layer)
        return outs, (torch.stack(hs), torch.stack(cs))

    def _state_hook(self, layer: int) -> Any:
        on_h, on_c = self.hooked("transform_hidden_state"), self.hooked("transform_cell_state")
        if not on_h and not on_c:
            return None

        def hook(new: tuple[Tensor, Tensor], old: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            h, c = new
            for reg in on_h:
                h = reg.transform_hidden_state(h, old[0], layer)
            for reg in on_c:
                c = reg.transform_cell_state(c, old[1], layer)
            return h, c

        return hook


def _name(layer: int, direction: int) -> str:
    return f"weight_hh_l{layer}" + ("_reverse" if direction else "")
