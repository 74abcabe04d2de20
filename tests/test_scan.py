"""The explicit cells' hand-written BPTT (``_scan``) against the same cells run step by step under
autograd, and against ``gradcheck``: outputs, final states and every gradient, in float64."""

from __future__ import annotations

import pytest
import torch
from rnnlab_plugins.backbones import _cells, _scan

MODES = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def _inputs(mode: str, *, batch: int = 3, steps: int = 6, inputs: int = 4, hidden: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gates = GATES[mode] * hidden

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).requires_grad_()

    x = rand(batch, steps, inputs)
    weights = (rand(gates, inputs), rand(gates, hidden), rand(gates), rand(gates))
    state = (rand(batch, hidden), rand(batch, hidden)) if mode == "lstm" else rand(batch, hidden)
    return x, weights, state


def _run(mode, x, weights, state, lengths, keep, slow: bool):
    hook = (lambda new, old: new) if slow else None  # any hook takes the per-step autograd loop
    out, final = _cells.scan(mode, x, state, weights, lengths, None, hook, keep)
    finals = final if isinstance(final, tuple) else (final,)
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    loss = loss + sum((f * torch.randn(f.shape, generator=g, dtype=f.dtype)).sum() for f in finals)
    leaves = [x, *weights, *(state if isinstance(state, tuple) else (state,))]
    return out, finals, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["plain", "lengths", "keep", "keep+lengths", "keep as a number"])
def test_the_hand_written_bptt_equals_autograd_step_by_step(mode, case):
    x, weights, state = _inputs(mode)
    lengths = torch.tensor([6, 2, 4]) if "lengths" in case else None
    keep: tuple = (None, None)
    if case == "keep as a number":
        keep = (0.3, 0.6 if mode == "lstm" else None)
    elif "keep" in case:
        g = torch.Generator().manual_seed(2)
        shape = (x.size(1), x.size(0), 5)
        keep = (torch.bernoulli(torch.full(shape, 0.4), generator=g).double(), None)
        if mode == "lstm":
            keep = (keep[0], torch.bernoulli(torch.full(shape, 0.3), generator=g).double())
    fast = _run(mode, x, weights, state, lengths, keep, slow=False)
    slow = _run(mode, x, weights, state, lengths, keep, slow=True)
    torch.testing.assert_close(fast[0], slow[0], rtol=0, atol=1e-12)
    for a, b in zip(fast[1], slow[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    names = ["x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0"]
    for name, a, b in zip(names, fast[2], slow[2], strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"{mode} {case}: d{name}")
    if lengths is not None:  # padded steps: zero outputs, and the final state is the last valid one
        assert fast[0][1, 2:].abs().max() == 0


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode):
    _, weights, state = _inputs(mode, batch=2, steps=4, inputs=3, hidden=3)
    keep = torch.bernoulli(torch.full((4, 2, 3), 0.5), generator=torch.Generator().manual_seed(3)).double()
    xi = torch.randn(4, 2, GATES[mode] * 3, dtype=torch.float64, requires_grad=True)
    w_hh, b_hh = weights[1], weights[3]
    if mode == "lstm":
        fn = lambda xi, h, c, w: _scan.LSTMScan.apply(xi, h, c, w, keep, 0.25, None)  # noqa: E731
        args = (xi, *state, w_hh)
    elif mode == "gru":
        fn = lambda xi, h, w, b: _scan.GRUScan.apply(xi, h, w, b, keep, None)  # noqa: E731
        args = (xi, state, w_hh, b_hh)
    else:
        fn = lambda xi, h, w: _scan.RNNScan.apply(xi, h, w, mode == "rnn_relu", keep, None)  # noqa: E731
        args = (xi, state, w_hh)
    assert torch.autograd.gradcheck(fn, args)


def test_a_bidirectional_layer_with_keeps_matches_the_step_by_step_loop():
    x, weights, _ = _inputs("lstm")
    own = dict(zip(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"], weights, strict=True))
    own |= {f"{k}_reverse": v.detach().flip(0).clone().requires_grad_() for k, v in list(own.items())}
    lengths = torch.tensor([6, 3, 5])

    def keep(state: str, like: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(torch.full(like.shape, 0.3, dtype=like.dtype))

    results = []
    for hook in (None, lambda new, old: new):
        torch.manual_seed(0)
        out, (h, c) = _cells.run_layer("lstm", own, x, None, lengths, True, None, hook, keep)
        grads = torch.autograd.grad((out**2).sum() + h.sum() + c.sum(), [x, *own.values()])
        results.append((out, h, c, grads))
    for a, b in zip(results[0][:3], results[1][:3], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for a, b in zip(results[0][3], results[1][3], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
