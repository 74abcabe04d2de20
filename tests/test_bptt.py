"""rnnlab.bptt: the vanilla RNN's backpropagation through time from the equations, against autograd."""

from __future__ import annotations

import pytest
import torch

from rnnlab import bptt

B, T, C, H, OUT = 3, 7, 2, 5, 2


def _problem(seed: int = 0, scale: float = 0.9):
    g = torch.Generator().manual_seed(seed + 100)
    p = bptt.RNNParams.random(C, H, OUT, seed=seed, scale=scale)
    x = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64) * 0.5
    target = torch.randn(B, T, OUT, generator=g, dtype=torch.float64)
    return p, x, h0, target


def _autograd(p: bptt.RNNParams, x, h0, target, mask=None):
    """Every gradient by autograd, and dL/dh_t through retained states."""
    leaves = {k: getattr(p, k).clone().requires_grad_() for k in ("W_xh", "W_hh", "b_h", "W_hy", "b_y")}
    xs, h0s = x.clone().requires_grad_(), h0.clone().requires_grad_()
    h, states = h0s, []
    for t in range(T):
        h = torch.tanh(xs[:, t] @ leaves["W_xh"].T + h @ leaves["W_hh"].T + leaves["b_h"])
        h.retain_grad()
        states.append(h)
    y = torch.stack(states, 1) @ leaves["W_hy"].T + leaves["b_y"]
    keep = torch.ones(B, T, dtype=torch.bool) if mask is None else mask
    loss = ((y - target) ** 2)[keep].mean()
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items()}
    return {**grads, "x": xs.grad, "h0": h0s.grad, "h": torch.stack([s.grad for s in states], 1)}


@pytest.mark.parametrize("loss_at", ["every_step", "last_step"])
def test_bptt_from_the_equations_equals_autograd_in_float64(loss_at):
    p, x, h0, target = _problem()
    mask = None if loss_at == "every_step" else torch.arange(T)[None, :].expand(B, T) == T - 1
    y = bptt.forward(x, p, h0)[1]
    ours = bptt.backward(x, p, bptt.mse_grad(y, target, mask), h0)
    reference = _autograd(p, x, h0, target, mask)
    for name, expected in reference.items():
        got = getattr(ours, name)
        assert got.shape == expected.shape, name
        assert (got - expected).abs().max() < 1e-6, f"dL/d{name} differs by {(got - expected).abs().max():.2e}"


def test_the_forward_pass_is_torch_nn_rnn_with_the_same_weights():
    p, x, h0, _ = _problem(seed=1)
    rnn = torch.nn.RNN(C, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(p.W_xh)
        rnn.weight_hh_l0.copy_(p.W_hh)
        rnn.bias_ih_l0.copy_(p.b_h)
        rnn.bias_hh_l0.zero_()
    out, last = rnn(x, h0[None])
    hs = bptt.forward(x, p, h0)[0]
    torch.testing.assert_close(hs, out, rtol=0, atol=1e-12)
    torch.testing.assert_close(hs[:, -1], last[0], rtol=0, atol=1e-12)


def test_dropping_the_path_through_later_steps_gives_wrong_gradients():
    """The article's recursion (docs/bptt.md): dL/dh_t from y_t alone, plus the output bias. With the
    loss at the last step only, it gives no gradient to any earlier state, so W_hh's is far off."""
    p, x, h0, target = _problem(seed=2)
    last = torch.arange(T)[None, :].expand(B, T) == T - 1
    y = bptt.forward(x, p, h0)[1]
    dy = bptt.mse_grad(y, target, last)
    hs = bptt.forward(x, p, h0)[0]
    h_prev = torch.cat([h0[:, None], hs[:, :-1]], 1)
    article_a = (1 - hs**2) * (dy @ p.W_hy + p.b_y @ p.W_hy)  # no W_hh^T a_{t+1}; a stray b_y term
    article_W_hh = article_a.reshape(-1, H).T @ h_prev.reshape(-1, H)
    correct = bptt.backward(x, p, dy, h0)
    assert correct.h[:, :-1].abs().max() > 1e-3  # earlier states do reach the last step's loss
    assert (article_W_hh - correct.W_hh).norm() > 0.1 * correct.W_hh.norm()


def test_per_step_norms_vanish_through_a_contracting_w_hh_and_keep_through_an_orthogonal_one():
    """||dL/dh_t|| for a loss at the last step: it shrinks going back through a W_hh of small gain;
    an orthogonal W_hh with small inputs (tanh near its linear part) keeps it."""
    import dataclasses

    last = torch.arange(T)[None, :].expand(B, T) == T - 1
    p, x, h0, target = _problem(seed=3, scale=0.3)
    q, _ = torch.linalg.qr(torch.randn(H, H, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    orthogonal = dataclasses.replace(p, W_hh=q, W_xh=p.W_xh * 0.01, b_h=torch.zeros(H, dtype=torch.float64))
    ratios = []
    for params, start in ((p, h0), (orthogonal, h0 * 0.01)):
        y = bptt.forward(x, params, start)[1]
        norms = bptt.backward(x, params, bptt.mse_grad(y, target, last), start).per_step_norms()
        assert norms.shape == (T,)
        ratios.append(float(norms[0] / norms[-1]))
    assert ratios[0] < 1e-3 and ratios[1] > 0.9, ratios
