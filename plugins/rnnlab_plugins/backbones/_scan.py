"""The explicit cells' fast path: a whole sequence of one direction of one layer as one autograd
node, with backpropagation through time written from the equations (as ``rnnlab.bptt`` does for
the article's RNN) instead of recorded op by op.

Eager autograd records some ten nodes a step for an LSTM cell and replays them one by one; here the
forward loop runs without recording, keeps what the backward needs in preallocated buffers, and the
backward loop computes the gate gradients of each step by hand; the recurrent weight's gradient is
then one matrix product over all steps (sum_t dA_t^T h_{t-1}), not one a step. ``_cells.scan``
takes this path unless a step's states must be graph nodes (diagnostics' ``record``) or a per-step
transform hook needs autograd; ``tests/test_scan.py`` checks it against that autograd loop and
``gradcheck``.

Every path shares two per-step masks, (T, B, H) or broadcastable:

- ``keep``: the fraction of each unit's previous state the step keeps, ``s_t = k s_{t-1} + (1 - k) s~_t``
  (zoneout: a Bernoulli draw in training, its probability in eval), one for h and one for c;
- ``valid``: 0 at a sequence's padded steps, where the state holds (its keep is 1) and the output
  is zero.

Notation in the comments: a = pre-activations, s~ = a step's new state before keep.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable


def masks(
    keep_h: Tensor | float | None, keep_c: Tensor | float | None, valid: Tensor | None, dtype: torch.dtype
) -> tuple[Any, Any, Any]:
    """The keeps with padding folded in (a padded step keeps its whole state) and the output mask."""
    if valid is None:
        return keep_h, keep_c, None
    m = valid.to(dtype)

    def fold(k: Tensor | float | None) -> Tensor:
        moves: Tensor = m if k is None else (1 - k) * m  # the share of the step's new state taken
        return 1 - moves

    return fold(keep_h), fold(keep_c), m


def steps_of(k: Tensor | float | None, steps: int) -> list[Any]:
    """A keep or mask for every step, as a list made once: a (T, B, H) tensor's rows, or ``k`` itself
    (a number or None) repeated."""
    return list(k.unbind(0)) if torch.is_tensor(k) and k.dim() == 3 else [k] * steps  # type: ignore[union-attr]


def _split(d: Tensor, k: Tensor | float | None, k1: Tensor | float | None) -> tuple[Tensor, Tensor | None]:
    """dL/ds_t -> (dL/ds~_t, the part that flows straight to s_{t-1}); ``k1`` is 1 - k."""
    if k is None or k1 is None:
        return d, None
    return d * k1, d * k


def _complement(k: Tensor | float | None) -> Tensor | float | None:
    return None if k is None else 1 - k  # once for every step, not once a step


def _outputs(hs: Tensor, m: Tensor | None) -> Tensor:
    """Every step's output (T, B, H): its state, zero at padded steps. A copy, not a view of the
    buffer the backward reads."""
    return hs[1:].clone() if m is None else hs[1:] * m


class LSTMScan(torch.autograd.Function):
    """xi (T, B, 4H), both biases in; h0, c0 (B, H); w_hh (4H, H) -> out (T, B, H), h_T, c_T."""

    @staticmethod
    def forward(ctx: FunctionCtx, xi: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, kh: Any, kc: Any, m: Any) -> Any:  # type: ignore[override]
        steps, batch, _ = xi.shape
        hidden = h0.size(1)
        acts = xi.new_empty(steps, batch, 4 * hidden)  # i, f, g, o after their activations
        tanh_c = xi.new_empty(steps, batch, hidden)  # tanh(c~_t)
        hs, cs = xi.new_empty(steps + 1, batch, hidden), xi.new_empty(steps + 1, batch, hidden)
        hs[0], cs[0] = h0, c0
        w_t = w_hh.T
        # Every per-step view taken once, before the loop: a view made in the loop costs a
        # dispatch each time, which at hidden 64 is as much as the arithmetic.
        x_, a_, tc_, h_, c_ = xi.unbind(0), acts.unbind(0), tanh_c.unbind(0), hs.unbind(0), cs.unbind(0)
        i_, f_, g_, o_ = (gate.unbind(0) for gate in acts.chunk(4, dim=2))
        pre = xi.new_empty(batch, 4 * hidden)  # one step's pre-activations, reused
        pre_g = pre[:, 2 * hidden : 3 * hidden]
        keep_c, keep_h = steps_of(kc, steps), steps_of(kh, steps)
        for t in range(steps):  # written in place into the buffers: no copy a step
            torch.addmm(x_[t], h_[t], w_t, out=pre)
            torch.sigmoid(pre, out=a_[t])
            torch.tanh(pre_g, out=g_[t])
            k = keep_c[t]
            c = c_[t + 1] if k is None else torch.empty_like(c_[t])
            torch.mul(f_[t], c_[t], out=c).addcmul_(i_[t], g_[t])  # c~ = f c + i g
            torch.tanh(c, out=tc_[t])
            if k is not None:
                torch.lerp(c, c_[t], k, out=c_[t + 1])
            k = keep_h[t]
            if k is None:
                torch.mul(o_[t], tc_[t], out=h_[t + 1])
            else:
                torch.lerp(o_[t] * tc_[t], h_[t], k, out=h_[t + 1])
        ctx.save_for_backward(w_hh, acts, tanh_c, hs, cs)
        ctx.masks = (kh, kc, m)  # type: ignore[attr-defined]
        return _outputs(hs, m), hs[steps].clone(), cs[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, d_out: Tensor, d_hT: Tensor | None, d_cT: Tensor | None) -> Any:  # type: ignore[override]
        w_hh, acts, tanh_c, hs, cs = ctx.saved_tensors  # type: ignore[attr-defined]
        kh, kc, m = ctx.masks  # type: ignore[attr-defined]
        kh1, kc1 = _complement(kh), _complement(kc)
        steps, hidden = tanh_c.size(0), tanh_c.size(2)
        # Step by step on (B, H) blocks that stay in cache; sigmoid's and tanh's derivatives through
        # torch's own kernels for them (dy * s (1 - s) and dy * (1 - y^2), one pass each).
        sig_bw, tanh_bw = torch.ops.aten.sigmoid_backward, torch.ops.aten.tanh_backward
        grads = d_out if m is None else d_out * m  # what each step's output passes back
        da = torch.empty_like(acts)  # dL/da_t: the input projection's gradient, step by step
        dh = grads[steps - 1] if d_hT is None else d_hT + grads[steps - 1]
        dc = torch.zeros_like(cs[0]) if d_cT is None else d_cT.clone()
        a_, tc_, c_, out_ = acts.unbind(0), tanh_c.unbind(0), cs.unbind(0), grads.unbind(0)
        i_, f_, g_, o_ = (gate.unbind(0) for gate in acts.chunk(4, dim=2))
        da_, dai_, daf_, dag_, dao_ = da.unbind(0), *(gate.unbind(0) for gate in da.chunk(4, dim=2))
        keep_h, keep_h1 = steps_of(kh, steps), steps_of(kh1, steps)
        keep_c, keep_c1 = steps_of(kc, steps), steps_of(kc1, steps)
        for t in range(steps - 1, -1, -1):
            dh_new, dh_prev = _split(dh, keep_h[t], keep_h1[t])
            dc_new, dc_prev = _split(dc, keep_c[t], keep_c1[t])
            dc_new = dc_new + tanh_bw(dh_new * o_[t], tc_[t])  # through h~ = o tanh(c~)
            torch.mul(dc_new, g_[t], out=dai_[t])
            torch.mul(dc_new, c_[t], out=daf_[t])
            torch.mul(dh_new, tc_[t], out=dao_[t])
            dg = tanh_bw(dc_new * i_[t], g_[t])
            row = da_[t]
            sig_bw(row, a_[t], grad_input=row)  # i, f, o (and g's slot, overwritten next)
            dag_[t].copy_(dg)
            dc = dc_new * f_[t] if dc_prev is None else torch.addcmul(dc_prev, dc_new, f_[t])
            if t == 0:
                dh = row @ w_hh if dh_prev is None else torch.addmm(dh_prev, row, w_hh)
            else:  # dL/dh_{t-1}: through the gates, straight through the keep, and from its own output
                base = out_[t - 1] if dh_prev is None else dh_prev + out_[t - 1]
                dh = torch.addmm(base, row, w_hh)
        d_w = da.view(-1, 4 * hidden).T @ hs[:-1].reshape(-1, hidden)  # sum_t dA_t^T h_{t-1}
        return da, dh, dc, d_w, None, None, None


class GRUScan(torch.autograd.Function):
    """xi (T, B, 3H) with b_ih in; h0 (B, H); w_hh (3H, H); b_hh (3H,) or None -> out, h_T."""

    @staticmethod
    def forward(ctx: FunctionCtx, xi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, kh: Any, m: Any) -> Any:  # type: ignore[override]
        steps, batch, _ = xi.shape
        hidden = h0.size(1)
        rz = xi.new_empty(steps, batch, 2 * hidden)  # r, z after the sigmoid
        ns, hns = xi.new_empty(steps, batch, hidden), xi.new_empty(steps, batch, hidden)  # n_t, W_hn h + b_hn
        hs = xi.new_empty(steps + 1, batch, hidden)
        hs[0] = h0
        keeps = steps_of(kh, steps)
        for t in range(steps):
            gh = hs[t] @ w_hh.T if b_hh is None else torch.addmm(b_hh, hs[t], w_hh.T)
            torch.sigmoid(xi[t, :, : 2 * hidden] + gh[:, : 2 * hidden], out=rz[t])
            r, z = rz[t].chunk(2, dim=1)
            hns[t] = gh[:, 2 * hidden :]
            torch.tanh(torch.addcmul(xi[t, :, 2 * hidden :], r, hns[t]), out=ns[t])
            k = keeps[t]
            if k is None:
                torch.lerp(ns[t], hs[t], z, out=hs[t + 1])  # (1 - z) n + z h
            else:
                torch.lerp(torch.lerp(ns[t], hs[t], z), hs[t], k, out=hs[t + 1])
        ctx.save_for_backward(w_hh, rz, ns, hns, hs)
        ctx.masks = (kh, m)  # type: ignore[attr-defined]
        ctx.has_bias = b_hh is not None  # type: ignore[attr-defined]
        return _outputs(hs, m), hs[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, d_out: Tensor, d_hT: Tensor | None) -> Any:  # type: ignore[override]
        w_hh, rz, ns, hns, hs = ctx.saved_tensors  # type: ignore[attr-defined]
        kh, m = ctx.masks  # type: ignore[attr-defined]
        kh1 = _complement(kh)
        steps, batch, hidden = ns.shape
        d_rz = rz * (1 - rz)
        d_n = 1 - ns**2
        dxi = rz.new_empty(steps, batch, 3 * hidden)
        dgh = torch.empty_like(dxi)  # dL/d(W_hh h + b_hh)
        dh = torch.zeros_like(hs[0]) if d_hT is None else d_hT.clone()
        ms, keeps, keeps1 = steps_of(m, steps), steps_of(kh, steps), steps_of(kh1, steps)
        for t in range(steps - 1, -1, -1):
            mt = ms[t]
            dh = dh + (d_out[t] if mt is None else d_out[t] * mt)
            dh_new, dh_prev = _split(dh, keeps[t], keeps1[t])
            r, z = rz[t].chunk(2, dim=1)
            dr, dz, dn = dxi[t].chunk(3, dim=1)
            torch.mul(dh_new * (1 - z), d_n[t], out=dn)  # dL/da_n
            torch.mul(dn * hns[t], d_rz[t, :, :hidden], out=dr)  # a_n = x_n + r (W_hn h + b_hn)
            torch.mul(dh_new * (hs[t] - ns[t]), d_rz[t, :, hidden:], out=dz)  # h~ = n + z (h - n)
            dgh[t, :, : 2 * hidden] = dxi[t, :, : 2 * hidden]
            torch.mul(dn, r, out=dgh[t, :, 2 * hidden :])
            direct = dh_new * z if dh_prev is None else torch.addcmul(dh_prev, dh_new, z)
            dh = torch.addmm(direct, dgh[t], w_hh)
        flat = dgh.view(-1, 3 * hidden)
        d_w = flat.T @ hs[:-1].reshape(-1, hidden)
        d_b = flat.sum(0) if ctx.has_bias else None  # type: ignore[attr-defined]
        return dxi, dh, d_w, d_b, None, None


class RNNScan(torch.autograd.Function):
    """xi (T, B, H), both biases in; h0 (B, H); w_hh (H, H) -> out, h_T. ``relu`` or tanh."""

    @staticmethod
    def forward(ctx: FunctionCtx, xi: Tensor, h0: Tensor, w_hh: Tensor, relu: bool, kh: Any, m: Any) -> Any:  # type: ignore[override]
        steps, batch, hidden = xi.shape
        hs = xi.new_empty(steps + 1, batch, hidden)
        new = hs[1:] if kh is None else xi.new_empty(steps, batch, hidden)  # h~_t, before keep
        hs[0] = h0
        keeps = steps_of(kh, steps)
        for t in range(steps):
            a = torch.addmm(xi[t], hs[t], w_hh.T)
            if relu:
                torch.clamp_min(a, 0, out=new[t])
            else:
                torch.tanh(a, out=new[t])
            k = keeps[t]
            if k is not None:
                torch.lerp(new[t], hs[t], k, out=hs[t + 1])
        ctx.save_for_backward(w_hh, hs, new)
        ctx.masks, ctx.relu = (kh, m), relu  # type: ignore[attr-defined]
        return _outputs(hs, m), hs[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, d_out: Tensor, d_hT: Tensor | None) -> Any:  # type: ignore[override]
        w_hh, hs, new = ctx.saved_tensors  # type: ignore[attr-defined]
        kh, m = ctx.masks  # type: ignore[attr-defined]
        kh1 = _complement(kh)
        d_act = (new > 0).to(new.dtype) if ctx.relu else 1 - new**2  # type: ignore[attr-defined]
        da = torch.empty_like(new)
        dh = torch.zeros_like(hs[0]) if d_hT is None else d_hT.clone()
        steps = new.size(0)
        ms, keeps, keeps1 = steps_of(m, steps), steps_of(kh, steps), steps_of(kh1, steps)
        for t in range(steps - 1, -1, -1):
            mt = ms[t]
            dh = dh + (d_out[t] if mt is None else d_out[t] * mt)
            dh_new, dh_prev = _split(dh, keeps[t], keeps1[t])
            torch.mul(dh_new, d_act[t], out=da[t])
            dh = da[t] @ w_hh if dh_prev is None else torch.addmm(dh_prev, da[t], w_hh)
        d_w = da.view(-1, da.size(2)).T @ hs[:-1].reshape(-1, hs.size(2))
        return da, dh, d_w, None, None, None
