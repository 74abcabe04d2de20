"""The regularizer contract, on a reference backbone that calls every hook."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from rnnlab.backbone import Backbone
from rnnlab.regularizer import BACKBONE_HOOKS, Regularizer
from rnnlab.testing._config import _instance, _label, build

# ----------------------------------------------------------------------------- regularizers


class ReferenceBackbone(Backbone):
    """A two-layer LSTM written as an explicit cell loop that calls every regularizer hook: the
    backbone :func:`check_regularizer` trains a regularizer on, and a template for a backbone
    with per-step hooks (``transform_hidden_state`` / ``transform_cell_state``)."""

    supported_hooks = BACKBONE_HOOKS

    def __init__(self, *, input_size: int, hidden_size: int, num_layers: int = 2) -> None:
        super().__init__()
        self.output_size = hidden_size
        self.cells = nn.ModuleList(
            nn.LSTMCell(input_size if i == 0 else hidden_size, hidden_size) for i in range(num_layers)
        )

    def recurrent_weights(self) -> dict[str, Tensor]:
        return {f"weight_hh_l{i}": cast(nn.LSTMCell, cell).weight_hh for i, cell in enumerate(self.cells)}

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        outs, final = self._run(x, state, lengths)
        return outs[-1], final

    def layers(self, x: Tensor, state: Any = None, lengths: Tensor | None = None) -> list[Tensor]:
        return self._run(x, state, lengths)[0]

    def _run(self, x: Tensor, state: Any, lengths: Tensor | None) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        b, t, _ = x.shape
        steps = torch.arange(t, device=x.device)
        valid = None if lengths is None else (steps[None, :] < lengths.to(x.device)[:, None])  # (B, T)
        outs: list[Tensor] = []
        hs, cs = [], []
        h_in = x
        for i, module in enumerate(self.cells):
            cell = cast(nn.LSTMCell, module)
            w_hh = cell.weight_hh
            for reg in self.hooked("transform_recurrent_weight"):
                w_hh = reg.transform_recurrent_weight(f"weight_hh_l{i}", w_hh)
            gates_x = h_in @ cell.weight_ih.T + cell.bias_ih + cell.bias_hh  # (B, T, 4H)
            h = c = x.new_zeros(b, self.output_size)
            if state is not None:
                h, c = state[0][i], state[1][i]
            out = []
            like = x.new_empty(t, b, self.output_size)
            keep_h, keep_c = self.state_keep("h", like, i), self.state_keep("c", like, i)  # zoneout
            for step, g_x in enumerate(gates_x.unbind(1)):
                i_g, f_g, g_g, o_g = (g_x + h @ w_hh.T).chunk(4, dim=-1)  # (B, H) each
                c_new = torch.sigmoid(f_g) * c + torch.sigmoid(i_g) * torch.tanh(g_g)
                for reg in self.hooked("transform_cell_state"):
                    c_new = reg.transform_cell_state(c_new, c, i)
                h_new = torch.sigmoid(o_g) * torch.tanh(c_new)  # from c~, before the cell's keep
                if keep_c is not None:
                    c_new = torch.lerp(c_new, c, keep_c[step] if isinstance(keep_c, Tensor) else keep_c)
                if keep_h is not None:
                    h_new = torch.lerp(h_new, h, keep_h[step] if isinstance(keep_h, Tensor) else keep_h)
                for reg in self.hooked("transform_hidden_state"):
                    h_new = reg.transform_hidden_state(h_new, h, i)
                if valid is not None:  # padded steps keep the state and output zeros
                    keep = valid[:, step : step + 1]  # (B, 1)
                    h_new, c_new = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
                    out.append(h_new * keep)
                else:
                    out.append(h_new)
                h, c = h_new, c_new
            outs.append(torch.stack(out, dim=1))  # (B, T, H)
            hs.append(h)
            cs.append(c)
            h_in = outs[-1]
            if i < len(self.cells) - 1:
                for reg in self.hooked("transform_layer_output"):
                    h_in = reg.transform_layer_output(h_in, i)
        return outs, (torch.stack(hs), torch.stack(cs))  # final state: (L, B, H) each


def check_regularizer(schema: Any, *, hidden: int = 6, batch: int = 3, steps: int = 5, seed: int = 0) -> Regularizer:
    """Build the regularizer from ``schema`` and check the :class:`rnnlab.regularizer.Regularizer`
    contract; then train one step of a real ``SequenceNet`` with it on :class:`ReferenceBackbone`
    (which calls every hook). Returns the regularizer."""
    from rnnlab.model import SequenceNet
    from rnnlab.task import TaskSpec

    config = _instance(schema)
    label = _label(config)
    torch.manual_seed(seed)
    reg = build("regularizer", config)
    assert isinstance(reg, Regularizer), f"{label}: builds a {type(reg).__name__}, not a rnnlab.regularizer.Regularizer"
    hooks = reg.backbone_hooks()
    assert hooks <= BACKBONE_HOOKS, f"{label}: unknown hooks {sorted(hooks - BACKBONE_HOOKS)}"
    x = torch.randn(batch, steps, 2)  # (B, T, C)
    h = torch.randn(batch, steps, hidden, requires_grad=True)  # (B, T, H)
    lengths = torch.tensor([steps] + [max(1, steps - 2)] * (batch - 1))
    for mode in ("train", "eval"):
        reg.train(mode == "train")
        assert reg.transform_inputs(x).shape == x.shape, f"{label}: transform_inputs changes the input shape"
        assert reg.transform(h).shape == h.shape, f"{label}: transform changes the feature shape ({mode} mode)"
        for kwargs in ({}, {"lengths": lengths}):
            p = reg.penalty(h, **kwargs)
            if p is not None:
                assert isinstance(p, Tensor) and p.dim() == 0, f"{label}: penalty must be a scalar tensor or None"
                assert torch.isfinite(p), f"{label}: penalty is not finite"
    reg.eval()
    assert torch.equal(reg.transform(h), reg.transform(h)), f"{label}: transform is not deterministic in eval mode"
    p = reg.penalty(h)
    if p is not None and p.requires_grad:
        p.backward()
        assert h.grad is not None and torch.isfinite(h.grad).all(), f"{label}: penalty's gradient is not finite"

    backbone = ReferenceBackbone(input_size=2, hidden_size=hidden)
    net = SequenceNet(backbone, TaskSpec(input_size=2, output_size=1), [reg])
    net.train()
    features = net.features(x, lengths)  # (B, T, H)
    loss = net.head_out(features, lengths).pow(2).mean() + sum(net.penalties(features, lengths), torch.zeros(()))
    assert torch.isfinite(loss), f"{label}: non-finite loss in a SequenceNet"
    loss.backward()
    for pname, param in backbone.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), (
            f"{label}: {pname} gets no finite gradient through the regularizer"
        )
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x)), f"{label}: the model is not deterministic in eval mode"
    return reg
