"""Independently recurrent neural network (Li et al. 2018, arXiv:1803.04831).

Each unit has one recurrent weight, so units do not mix within a layer and stacking layers does:

    h_t = act(W x_t + u * h_{t-1} + b)        u: (H,), "*" elementwise

Bounding |u| (``recurrent_max``) keeps u^t from exploding or vanishing over long sequences, the
point of the paper; with relu the network can then be deep and long.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rnnlab.backbone import Backbone


class IndRNNCell(nn.Module):
    """One layer's weights: input projection W (H, C), recurrent weights u (H,), bias b (H,)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(input_size)  # nn.Linear's default initialization
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size).uniform_(0.0, 1.0))  # the paper's init for relu


class IndRNNBackbone(Backbone):
    """A stack of IndRNN layers, batch first. State: (L, B, H), as torch.nn.RNN's."""

    supported_hooks: ClassVar[frozenset[str]] = frozenset(
        {
            "transform_recurrent_weight",
            "transform_hidden_state",
            "state_keep",
            "transform_layer_output",
            "weight_penalty",
        }
    )

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        nonlinearity: str,
        recurrent_max: float | None,
        dropout: float,
    ) -> None:
        # No defaults: they live in IndRNNConfig alone, and rnnlab passes every field.
        super().__init__()
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.recurrent_max = recurrent_max
        self.dropout = dropout
        self.act = torch.relu if nonlinearity == "relu" else torch.tanh
        self.cells = nn.ModuleList(
            IndRNNCell(input_size if i == 0 else hidden_size, hidden_size) for i in range(num_layers)
        )

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        outs, final = self._run(x, state, lengths)
        return outs[-1], final  # (B, T, H), (L, B, H)

    def layers(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> list[Tensor]:
        return self._run(x, state, lengths)[0]

    def recurrent_weights(self) -> dict[str, Tensor]:
        return {f"weight_hh_l{i}": cell.weight_hh for i, cell in enumerate(self.cells)}

    def _recurrent(self, i: int) -> Tensor:
        """Layer ``i``'s u for this pass: clipped to recurrent_max, then through the regularizers."""
        u = self.cells[i].weight_hh  # (H,)
        if self.recurrent_max is not None:
            u = u.clamp(-self.recurrent_max, self.recurrent_max)
        for reg in self.hooked("transform_recurrent_weight"):
            u = reg.transform_recurrent_weight(f"weight_hh_l{i}", u)
        return u

    def _run(self, x: Tensor, state: Tensor | None, lengths: Tensor | None) -> tuple[list[Tensor], Tensor]:
        b, t, _ = x.shape
        valid = None
        if lengths is not None:
            valid = torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
        hidden_hooks = self.hooked("transform_hidden_state")
        outs: list[Tensor] = []
        finals: list[Tensor] = []
        inp = x
        for i, cell in enumerate(self.cells):
            u = self._recurrent(i)  # (H,)
            wx = inp @ cell.weight_ih.T + cell.bias  # (B, T, H): all steps' input projections at once
            h = x.new_zeros(b, self.hidden_size) if state is None else state[i]  # (B, H)
            steps = []
            kept = self.state_keep("h", wx.new_empty(t, b, self.hidden_size), i)  # zoneout: (T, B, H), a number or None
            for step, wx_t in enumerate(wx.unbind(1)):
                h_new = self.act(wx_t + u * h)  # (B, H)
                if kept is not None:
                    h_new = torch.lerp(h_new, h, kept[step] if isinstance(kept, Tensor) else kept)
                for reg in hidden_hooks:
                    h_new = reg.transform_hidden_state(h_new, h, i)
                if valid is not None:  # padded steps keep the state and give zeros
                    keep = valid[:, step : step + 1]  # (B, 1)
                    h = torch.where(keep, h_new, h)
                    steps.append(h_new * keep)
                else:
                    h = h_new
                    steps.append(h)
            out = torch.stack(steps, dim=1)  # (B, T, H)
            outs.append(out)
            finals.append(h)
            if i < len(self.cells) - 1:
                inp = nn.functional.dropout(out, self.dropout, self.training)
                for reg in self.hooked("transform_layer_output"):
                    inp = reg.transform_layer_output(inp, i)
        return outs, torch.stack(finals)  # (L, B, H)
