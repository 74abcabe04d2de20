"""The vanilla RNN and backpropagation through time, written from the equations (a reference).

Forward, for t = 1 .. T, batch-first rows as in the rest of rnnlab::

    z_t = W_xh x_t + W_hh h_{t-1} + b_h        h_t = tanh(z_t)        y_t = W_hy h_t + b_y

and a sequence loss L = sum_t l_t(y_t). Backward, given dL/dy_t from the loss (``dy``)::

    g_t = W_hy^T dL/dy_t + W_hh^T a_{t+1}      (dL/dh_t: its own output, and everything after it)
    a_t = (1 - h_t^2) * g_t                    (dL/dz_t; a_{T+1} = 0)

    dL/dW_hy = sum_t dL/dy_t h_t^T     dL/db_y = sum_t dL/dy_t
    dL/dW_hh = sum_t a_t h_{t-1}^T     dL/dW_xh = sum_t a_t x_t^T     dL/db_h = sum_t a_t
    dL/dh_0  = W_hh^T a_1              dL/dx_t  = W_xh^T a_t

The second term of g_t is the path from h_t through h_{t+1} to every later loss: without it the
gradient sees only the loss at step t. ``b_y`` appears in no gradient but its own (docs/bptt.md
sets this beside the article's formula). ``tests/test_bptt.py`` checks every gradient against
autograd in float64 to 1e-6, and against ``torch.nn.RNN`` with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RNNParams:
    """The vanilla RNN's weights: W_xh (H, C), W_hh (H, H), b_h (H,), W_hy (O, H), b_y (O,)."""

    W_xh: Tensor
    W_hh: Tensor
    b_h: Tensor
    W_hy: Tensor
    b_y: Tensor

    @classmethod
    def random(cls, inputs: int, hidden: int, outputs: int, *, seed: int = 0, scale: float = 0.5) -> RNNParams:
        """Gaussian weights (std ``scale`` / sqrt(fan-in)), float64."""
        g = torch.Generator().manual_seed(seed)

        def draw(*shape: int, fan_in: int) -> Tensor:
            return torch.randn(*shape, generator=g, dtype=torch.float64) * scale / fan_in**0.5

        return cls(
            W_xh=draw(hidden, inputs, fan_in=inputs),
            W_hh=draw(hidden, hidden, fan_in=hidden),
            b_h=draw(hidden, fan_in=hidden),
            W_hy=draw(outputs, hidden, fan_in=hidden),
            b_y=draw(outputs, fan_in=hidden),
        )


@dataclass(frozen=True)
class Gradients:
    """dL/d(every parameter), dL/dx (B, T, C), dL/dh_0 (B, H) and dL/dh_t for t = 1 .. T (B, T, H)."""

    W_xh: Tensor
    W_hh: Tensor
    b_h: Tensor
    W_hy: Tensor
    b_y: Tensor
    x: Tensor
    h0: Tensor
    h: Tensor

    def per_step_norms(self) -> Tensor:
        """(T,) ||dL/dh_t|| over the batch, t = 1 .. T: how much of the loss reaches each state."""
        return self.h.transpose(0, 1).reshape(self.h.shape[1], -1).norm(dim=1)


def forward(x: Tensor, p: RNNParams, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """States h_1 .. h_T (B, T, H) and outputs y_1 .. y_T (B, T, O) of inputs ``x`` (B, T, C)."""
    batch, steps, _ = x.shape
    h = x.new_zeros(batch, p.W_hh.shape[0]) if h0 is None else h0
    states = []
    for t in range(steps):
        h = torch.tanh(x[:, t] @ p.W_xh.T + h @ p.W_hh.T + p.b_h)  # (B, H)
        states.append(h)
    hs = torch.stack(states, dim=1)  # (B, T, H)
    return hs, hs @ p.W_hy.T + p.b_y


def backward(x: Tensor, p: RNNParams, dy: Tensor, h0: Tensor | None = None) -> Gradients:
    """Backpropagation through time for a loss whose gradient with respect to y_t is ``dy`` (B, T, O)
    (zero at steps without a loss): the recursion of the module docstring, from t = T down to 1."""
    hs, _ = forward(x, p, h0)
    batch, steps, hidden = hs.shape
    h_prev = torch.cat([(x.new_zeros(batch, 1, hidden) if h0 is None else h0[:, None]), hs[:, :-1]], dim=1)
    a_next = x.new_zeros(batch, hidden)  # a_{T+1}
    dh = torch.empty_like(hs)  # dL/dh_t
    da = torch.empty_like(hs)  # dL/dz_t
    for t in reversed(range(steps)):
        g = dy[:, t] @ p.W_hy + a_next @ p.W_hh  # (B, H): W_hy^T dy_t + W_hh^T a_{t+1}, as rows
        a = (1 - hs[:, t] ** 2) * g
        dh[:, t], da[:, t] = g, a
        a_next = a
    flat_a = da.reshape(-1, hidden)
    return Gradients(
        W_xh=flat_a.T @ x.reshape(-1, x.shape[-1]),
        W_hh=flat_a.T @ h_prev.reshape(-1, hidden),
        b_h=flat_a.sum(0),
        W_hy=dy.reshape(-1, dy.shape[-1]).T @ hs.reshape(-1, hidden),
        b_y=dy.reshape(-1, dy.shape[-1]).sum(0),
        x=da @ p.W_xh,
        h0=da[:, 0] @ p.W_hh,
        h=dh,
    )


def mse_grad(y: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """dL/dy for L = the mean squared error over the steps (and outputs) where ``mask`` (B, T) holds:
    2 (y - target) / n at those steps, 0 elsewhere."""
    keep = torch.ones(y.shape[:2], dtype=torch.bool) if mask is None else mask
    n = int(keep.sum()) * y.shape[-1]
    return torch.where(keep[..., None], 2 * (y - target) / n, torch.zeros_like(y))
