"""Explicit cells: one layer of torch.nn.RNN / LSTM / GRU written out step by step, on the same
parameters (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` and ``*_reverse``),
with the same equations as PyTorch's documentation gives for each module:

- RNN:  h' = act(W_ih x + b_ih + W_hh h + b_hh)
- LSTM: i, f, g, o = W_ih x + b_ih + W_hh h + b_hh (in that order); c' = s(f) c + s(i) tanh(g);
  h' = s(o) tanh(c')
- GRU:  r, z, n from W_ih x + b_ih and W_hh h + b_hh (in that order); r = s(.r), z = s(.z);
  n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = (1 - z) n + z h

The input projection of every step is one matrix product before the loop; the loop does the
recurrence. With ``lengths``, a sequence's state stops changing after its last valid step and its
outputs there are zeros, as the fused modules give through packing; the reverse direction of a
bidirectional layer starts at each sequence's last valid step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rnnlab_plugins.backbones import _scan

MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")

#: a step: (projected input (B, G), state, W_hh, b_hh) -> (output (B, H), new state, its gates:
#: {name: activation (B, H)}, for the diagnostics' saturation; empty for a cell without gates)
Step = Callable[[Tensor, Any, Tensor, Tensor | None], tuple[Tensor, Any, dict[str, Tensor]]]


# RNN and LSTM steps get b_hh folded into their projected input (``scan`` does it): one addmm a step.


def _rnn(act: Callable[[Tensor], Tensor]) -> Step:
    def step(xi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        h = act(torch.addmm(xi, h, w_hh.T))
        return h, h, {}

    return step


def _lstm(
    xi: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor, b_hh: Tensor | None
) -> tuple[Tensor, Any, dict[str, Tensor]]:
    h, c = state
    gates = torch.addmm(xi, h, w_hh.T)  # (B, 4H): i, f, g, o
    act = torch.sigmoid(gates)  # g's sigmoid is wasted; one kernel instead of three
    i, f, _, o = act.chunk(4, dim=1)
    g = torch.tanh(gates[:, 2 * c.size(1) : 3 * c.size(1)])
    c = torch.addcmul(f * c, i, g)
    h = o * torch.tanh(c)
    return h, (h, c), {"input": i, "forget": f, "cell": g, "output": o}


def _gru(xi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    gh = h @ w_hh.T if b_hh is None else torch.addmm(b_hh, h, w_hh.T)
    xr, xz, xn = xi.chunk(3, dim=1)
    hr, hz, hn = gh.chunk(3, dim=1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h = torch.lerp(n, h, z)  # (1 - z) n + z h
    return h, h, {"reset": r, "update": z, "candidate": n}


STEPS: dict[str, Step] = {"rnn_tanh": _rnn(torch.tanh), "rnn_relu": _rnn(torch.relu), "lstm": _lstm, "gru": _gru}


def reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Each sequence of ``x`` (B, T, ...) reversed within its valid steps; padding stays in place."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.size(1), device=x.device)[None, :]  # (1, T)
    n = lengths.to(x.device)[:, None]  # (B, 1)
    index = torch.where(steps < n, n - 1 - steps, steps)  # (B, T)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


def _float32(value: Any) -> Any:
    """``value`` with every floating tensor in it (in tuples, at any depth) as float32."""
    if isinstance(value, tuple):
        return tuple(_float32(v) for v in value)
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.float()
    return value


def scan(
    mode: str | Step,
    x: Tensor,
    state: Any,
    weights: tuple[Tensor, Tensor, Tensor | None, Tensor | None],
    lengths: Tensor | None,
    record: list[Tensor] | None = None,
    hook: Callable[[Any, Any], Any] | None = None,
    keep: tuple[Any, Any] = (None, None),
    gates: list[dict[str, Tensor]] | None = None,
) -> tuple[Tensor, Any]:
    """One direction of one layer: outputs (B, T, H) and the final state ((B, H), or a pair for LSTM).
    ``mode``: a name of :data:`STEPS`, or a step of one's own (then ``state`` must be given).
    ``record`` gets h_t (B, H) of every step, the tensors the next step reads: the gradient of a
    loss with respect to them is the whole dL/dh_t, through the later steps too, and ``gates`` the
    step's gate activations (see :data:`Step`). ``keep``: the
    fraction of each unit's previous h and c every step keeps (T, B, H), a number, or None
    (zoneout; see ``_scan``). ``hook(new, old)`` turns each step's new state into the one kept,
    given the state before the step, for any other per-step transform.

    A named mode with neither ``record`` nor ``hook`` runs as one node with hand-written BPTT
    (``_scan``); the others run step by step under autograd."""
    if torch.is_autocast_enabled(x.device.type):
        # Under mixed precision the cells run in float32, autocast off: the hand-written backward
        # mixes products and in-place sums that autocast would give different dtypes. Casts are
        # differentiable, so the float32 parameters get float32 gradients as usual.
        with torch.autocast(x.device.type, enabled=False):
            x, state, weights, keep = _float32((x, state, weights, keep))
            return scan(mode, x, state, weights, lengths, record, hook, keep, gates)
    w_ih, w_hh, b_ih, b_hh = weights
    batch, steps, _ = x.shape
    hidden = w_hh.shape[1]
    if state is None:
        zeros = x.new_zeros(batch, hidden)
        state = (zeros, zeros) if mode == "lstm" else zeros  # a callable step is given its state
    if isinstance(mode, str) and record is None and gates is None and hook is None:
        return _scan_fast(mode, x, state, weights, lengths, keep)
    xi = x @ w_ih.T if b_ih is None else torch.addmm(b_ih, x.reshape(-1, x.size(2)), w_ih.T).view(batch, steps, -1)
    if mode in ("rnn_tanh", "rnn_relu", "lstm"):  # b_hh adds to every step alike: fold it in once
        xi = xi if b_hh is None else xi + b_hh
        b_hh = None
    step = STEPS[mode] if isinstance(mode, str) else mode
    paired = isinstance(state, tuple)  # (h, c)
    valid = None if lengths is None else torch.arange(steps, device=x.device)[:, None] < lengths.to(x.device)[None, :]
    outs = []
    keep_h, keep_c = _scan.steps_of(keep[0], steps), _scan.steps_of(keep[1], steps)
    kept = keep[0] is not None or keep[1] is not None
    for t in range(steps):
        out, new, acts = step(xi[:, t], state, w_hh, b_hh)
        if gates is not None:
            gates.append(acts)
        if kept:
            new = _kept(new, state, keep_h[t], keep_c[t])
            out = new[0] if paired else new
        if hook is not None:
            new = hook(new, state)
            out = new[0] if paired else new
        if valid is not None:  # padded steps: the state holds, the output is zero
            ok = valid[t][:, None]
            out = torch.where(ok, out, torch.zeros_like(out))
            if paired:
                new = tuple(torch.where(ok, n, s) for n, s in zip(new, state, strict=True))
            else:
                new = torch.where(ok, new, state)
        outs.append(out)
        state = new
        if record is not None:
            record.append(state[0] if paired else state)
    return torch.stack(outs, dim=1), state


def _kept(new: Any, old: Any, keep_h: Any, keep_c: Any) -> Any:
    if not isinstance(new, tuple):
        return new if keep_h is None else torch.lerp(new, old, keep_h)
    h = new[0] if keep_h is None else torch.lerp(new[0], old[0], keep_h)
    return h, new[1] if keep_c is None else torch.lerp(new[1], old[1], keep_c)


def _scan_fast(
    mode: str,
    x: Tensor,
    state: Any,
    weights: tuple[Tensor, Tensor, Tensor | None, Tensor | None],
    lengths: Tensor | None,
    keep: tuple[Any, Any],
) -> tuple[Tensor, Any]:
    """:func:`scan` as one autograd node: the input projection time-major, then ``_scan``'s loop."""
    w_ih, w_hh, b_ih, b_hh = weights
    batch, steps, inputs = x.shape
    flat = x.transpose(0, 1).reshape(-1, inputs)  # (T*B, C), time-major
    if mode != "gru" and b_hh is not None:  # b_hh adds to every step alike: fold it in once
        b_ih = b_hh if b_ih is None else b_ih + b_hh
        b_hh = None
    xi = (flat @ w_ih.T if b_ih is None else torch.addmm(b_ih, flat, w_ih.T)).view(steps, batch, -1)
    valid = None
    if lengths is not None:
        valid = (torch.arange(steps, device=x.device)[:, None] < lengths.to(x.device)[None, :])[..., None]
    keep_h, keep_c, m = _scan.masks(keep[0], keep[1], valid, x.dtype)
    if mode == "lstm":
        out, h, c = _scan.LSTMScan.apply(xi, state[0], state[1], w_hh, keep_h, keep_c, m)
        return out.transpose(0, 1), (h, c)
    if mode == "gru":
        out, h = _scan.GRUScan.apply(xi, state, w_hh, b_hh, keep_h, m)
    else:
        out, h = _scan.RNNScan.apply(xi, state, w_hh, mode == "rnn_relu", keep_h, m)
    return out.transpose(0, 1), h


def run_layer(
    mode: str,
    weights: dict[str, Tensor],
    x: Tensor,
    state: Any,
    lengths: Tensor | None,
    bidirectional: bool,
    record: list[Tensor] | None = None,
    hook: Callable[[Any, Any], Any] | None = None,
    keep: Callable[[str, Tensor], Any] | None = None,
    gates: list[dict[str, Tensor]] | None = None,
) -> tuple[Tensor, Any]:
    """One layer, as ``nn.RNN/LSTM/GRU(num_layers=1)`` would run it on ``weights`` (named as its
    parameters): outputs (B, T, D*H) and the final state (D, B, H), a pair of them for LSTM.
    ``record`` and ``gates`` get the forward direction's h_t and gates of every step (see :func:`scan`). ``keep(state,
    like)`` gives each direction its keep for ``state`` "h" or "c" (see :func:`scan`)."""
    outs, finals = [], []
    for d, suffix in enumerate(("", "_reverse")[: 2 if bidirectional else 1]):
        own = tuple(weights.get(f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        s = None if state is None else tuple(t[d] for t in state) if mode == "lstm" else state[d]
        seq = x if d == 0 else reverse(x, lengths)
        keeps: tuple[Any, Any] = (None, None)
        if keep is not None:
            like = x.new_empty(x.size(1), x.size(0), weights[f"weight_hh_l0{suffix}"].size(1))  # (T, B, H)
            keeps = (keep("h", like), keep("c", like) if mode == "lstm" else None)
        first = d == 0
        out, final = scan(mode, seq, s, own, lengths, record if first else None, hook, keeps, gates if first else None)  # type: ignore[arg-type]
        outs.append(out if d == 0 else reverse(out, lengths))
        finals.append(final)
    if mode == "lstm":
        return torch.cat(outs, dim=2), (torch.stack([f[0] for f in finals]), torch.stack([f[1] for f in finals]))
    return torch.cat(outs, dim=2), torch.stack(finals)
