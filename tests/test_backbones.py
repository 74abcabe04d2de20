"""Every registered backbone and regularizer: shapes, backward, options (parametrized over the registry)."""

import pytest
import torch

from rnnlab.registry import backbones, regularizers


@pytest.mark.parametrize("name", backbones.names())
@pytest.mark.parametrize("bidirectional", [False, True])
def test_backbone_forward_backward(name, bidirectional):
    torch.manual_seed(0)
    kwargs = backbones.schema(name)().kwargs()
    kwargs.update(hidden_size=6, num_layers=2, dropout=0.1, bidirectional=bidirectional)
    net = backbones.create(name, input_size=3, **kwargs)
    x = torch.randn(4, 7, 3, requires_grad=True)  # (B, T, C)
    out, _ = net(x)
    assert out.shape == (4, 7, net.output_size) == (4, 7, 12 if bidirectional else 6)
    last = net.last_step(out)
    assert last.shape == (4, net.output_size)
    last.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters())
    if bidirectional:  # the backward direction's summary is its state after reading the whole sequence
        assert torch.equal(last[:, 6:], out[:, 0, 6:])


def test_rnn_relu_option_changes_the_cell():
    torch.manual_seed(0)
    tanh = backbones.create("rnn", input_size=2, hidden_size=4)
    relu = backbones.create("rnn", input_size=2, hidden_size=4, nonlinearity="relu")
    relu.load_state_dict(tanh.state_dict())
    x = torch.randn(2, 5, 2)
    assert (relu(x)[0] >= 0).all()
    assert (tanh(x)[0] < 0).any()


def test_rnn_is_the_elman_recurrence():
    """h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h), checked step by step against the fused module."""
    torch.manual_seed(0)
    net = backbones.create("rnn", input_size=2, hidden_size=3)
    x = torch.randn(1, 4, 2)
    out, _ = net(x)
    p = dict(net.rnn.named_parameters())
    h = torch.zeros(3)
    for t in range(4):
        pre = p["weight_hh_l0"] @ h + p["bias_hh_l0"] + p["weight_ih_l0"] @ x[0, t] + p["bias_ih_l0"]
        h = torch.tanh(pre)
        assert torch.allclose(out[0, t], h, atol=1e-6)


def test_dropout_regularizer_acts_in_training_only():
    reg = regularizers.create("dropout", p=0.5)
    h = torch.ones(2, 3, 100)
    reg.train()
    assert (reg.transform(h) == 0).any()
    reg.eval()
    assert torch.equal(reg.transform(h), h)


def test_ar_tar_penalty_matches_its_formula():
    reg = regularizers.create("ar_tar", alpha=2.0, beta=1.0)
    h = torch.tensor([[[1.0], [3.0]]])  # (B=1, T=2, H=1)
    assert reg.penalty(h).item() == pytest.approx(2.0 * (1 + 9) / 2 + 1.0 * 4)
