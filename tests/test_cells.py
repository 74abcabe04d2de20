"""backbone.kernel=cell: explicit RNN / LSTM / GRU cells equal the fused modules with the same weights."""

from __future__ import annotations

import math

import pytest
import torch
from rnnlab_plugins.backbones.config import GRUConfig, LSTMConfig, RNNConfig

from rnnlab.errors import ConfigError
from rnnlab.testing import build, check_backbone

SCHEMAS = {
    "rnn_tanh": lambda **kw: RNNConfig(**kw),
    "rnn_relu": lambda **kw: RNNConfig(nonlinearity="relu", **kw),
    "lstm": lambda **kw: LSTMConfig(**kw),
    "gru": lambda **kw: GRUConfig(**kw),
}


def _pair(mode: str, **kw):
    """The fused backbone and its explicit-cell twin, sharing one state dict."""
    fused = build("backbone", SCHEMAS[mode](kernel="fused", **kw), input_size=3)
    cell = build("backbone", SCHEMAS[mode](kernel="cell", **kw), input_size=3)
    cell.load_state_dict(fused.state_dict())
    return fused, cell


def _run(backbone, x, state, lengths):
    x = x.clone().requires_grad_()
    out, final = backbone(x, state, lengths)
    finals = final if isinstance(final, tuple) else (final,)
    # a loss that reads every output and the final state, weighted so no gradient cancels
    weights = torch.linspace(0.5, 1.5, out.numel()).view_as(out)
    loss = (out * weights).sum() + sum((f**2).sum() for f in finals)
    loss.backward()
    grads = {name: p.grad for name, p in backbone.named_parameters()}
    return out, finals, x.grad, grads


@pytest.mark.parametrize("mode", list(SCHEMAS))
@pytest.mark.parametrize(
    ("layers", "bidirectional", "ragged"),
    [(1, False, False), (2, False, True), (2, True, False), (1, True, True)],
    ids=["1-layer", "2-layer-lengths", "2-layer-bidirectional", "bidirectional-lengths"],
)
def test_cells_match_the_fused_module_in_outputs_state_and_gradients(mode, layers, bidirectional, ragged):
    torch.manual_seed(0)
    fused, cell = _pair(mode, hidden_size=6, num_layers=layers, bidirectional=bidirectional)
    x = torch.randn(4, 9, 3)
    lengths = torch.tensor([9, 4, 7, 1]) if ragged else None
    d = 2 if bidirectional else 1
    h0 = torch.randn(d * layers, 4, 6) * 0.5
    state = (h0, torch.randn_like(h0) * 0.5) if mode == "lstm" else h0
    a, b = _run(fused, x, state, lengths), _run(cell, x, state, lengths)
    _close(b[0], a[0], "outputs")  # zeros at padded steps in both
    for got, expected in zip(b[1], a[1], strict=True):
        _close(got, expected, "final state")
    _close(b[2], a[2], "dL/dx")
    assert a[3].keys() == b[3].keys()
    for name in a[3]:
        _close(b[3][name], a[3][name], f"dL/d{name}")


def _close(got, expected, what):
    """Equal to 1e-5 of the larger of 1 and the tensor's largest magnitude (float32: a relu RNN's
    gradients reach ~100, where float32 rounding alone is ~1e-5)."""
    bound = 1e-5 * max(1.0, float(expected.detach().abs().max()))
    gap = float((got - expected).abs().max())
    assert gap <= bound, f"{what}: differs by {gap:.2e} (bound {bound:.2e})"


@pytest.mark.parametrize("mode", list(SCHEMAS))
def test_a_cell_backbone_passes_the_backbone_contract(mode):
    check_backbone(SCHEMAS[mode](kernel="cell", hidden_size=5, num_layers=2))


def test_kernel_is_checked_in_one_line():
    with pytest.raises(ConfigError, match=r"^kernel: invalid value 'cuda'; valid choices: cell, fused$"):
        LSTMConfig(kernel="cuda")


def test_a_run_trains_with_explicit_cells(small_cfg):
    from rnnlab.train import train

    metrics = train(small_cfg("backbone=gru", "backbone.kernel=cell"))
    assert metrics["epochs"] == 2 and math.isfinite(metrics["test/rmse"])
