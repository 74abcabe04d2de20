"""backbone=ln_lstm: the layer-normalized LSTM (Ba et al. 2016) as explicit cells."""

from __future__ import annotations

import math

import torch
from rnnlab_plugins.backbones.config import LayerNormLSTMConfig

from rnnlab.testing import build


def _ln(v):
    return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False, keepdim=True) + 1e-5)


def test_the_step_is_the_papers_equations_and_the_forget_bias_starts_at_one():
    torch.manual_seed(0)
    backbone = build("backbone", LayerNormLSTMConfig(hidden_size=4, num_layers=1), input_size=3)
    cell = backbone.cells[0]
    assert torch.equal(cell.bias[4:8], torch.ones(4)) and cell.bias[:4].abs().sum() == 0
    x = torch.randn(2, 3, 3)
    out, (h_n, c_n) = backbone(x)
    h = c = torch.zeros(2, 4)
    for t in range(3):  # fresh layer norms: gain 1, bias 0
        gates = _ln(x[:, t] @ cell.weight_ih.T) + _ln(h @ cell.weight_hh.T) + cell.bias
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(_ln(c))
        torch.testing.assert_close(out[:, t], h, rtol=0, atol=1e-6)
    torch.testing.assert_close(h_n[0], h, rtol=0, atol=1e-6)
    torch.testing.assert_close(c_n[0], c, rtol=0, atol=1e-6)


def test_layer_norm_makes_it_blind_to_the_scale_of_its_weights():
    torch.manual_seed(1)
    backbone = build("backbone", LayerNormLSTMConfig(hidden_size=5, num_layers=2), input_size=3)
    x = torch.randn(2, 6, 3)
    before = backbone(x)[0]
    with torch.no_grad():
        for cell in backbone.cells:
            cell.weight_hh.mul_(7.0)
            cell.weight_ih.mul_(3.0)
    # equal but for layer norm's epsilon (1e-5 added to each variance)
    torch.testing.assert_close(backbone(x)[0], before, rtol=0, atol=1e-3)


def test_a_run_trains_an_ln_lstm_with_zoneout_and_diagnostics(small_cfg):
    from rnnlab.train import train

    metrics = train(small_cfg("backbone=ln_lstm", "regularizer=[zoneout]", "diagnostics.enabled=true"))
    assert math.isfinite(metrics["test/rmse"])
