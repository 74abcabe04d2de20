"""The backbone contract."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from rnnlab.backbone import Backbone
from rnnlab.regularizer import BACKBONE_HOOKS, Regularizer
from rnnlab.testing._config import _ATOL, _instance, _label, build

# ----------------------------------------------------------------------------- backbones


def _flat(state: Any) -> list[Tensor]:
    """The tensors of a state (a tensor, a tuple/list of them, nested, or None), in order."""
    if state is None:
        return []
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for s in state for t in _flat(s)]
    if isinstance(state, dict):
        return [t for k in sorted(state) for t in _flat(state[k])]
    raise AssertionError(f"a state must be a tensor, a tuple/list/dict of them, or None; got {type(state).__name__}")


def _close(a: Any, b: Any) -> bool:
    ta, tb = _flat(a), _flat(b)
    if len(ta) != len(tb):
        return False
    return all(x.shape == y.shape and torch.allclose(x, y, atol=_ATOL) for x, y in zip(ta, tb, strict=True))


def _takes(fn: Callable[..., Any], name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _hook_recorder(hooks: Iterable[str]) -> tuple[Regularizer, list[str]]:
    """A regularizer overriding exactly ``hooks`` with identities, and the list of calls it records."""
    calls: list[str] = []

    def make(hook: str) -> Callable[..., Any]:
        def method(self: Regularizer, *args: Any) -> Any:
            calls.append(hook)
            if hook in ("weight_penalty", "state_keep"):  # None: no penalty, nothing kept
                return None
            return args[1] if hook == "transform_recurrent_weight" else args[0]

        return method

    cls = type("HookRecorder", (Regularizer,), {h: make(h) for h in hooks})
    return cls(), calls


def check_backbone(schema: Any, input_size: int = 3, *, batch: int = 3, steps: int = 7, seed: int = 0) -> Backbone:
    """Build the backbone from ``schema`` (class: its defaults; instance: as given) with ``input_size``
    and check the :class:`rnnlab.backbone.Backbone` contract. Returns the backbone.

    Checked: ``output_size``; ``forward(x) -> (features (B, T, output_size), final_state)``;
    ``last_step``; finite gradients for every parameter and the input; eval mode deterministic;
    with ``state``: the final state goes back in, and (unless ``bidirectional``) two chunks with the
    state handed over equal one pass; with ``lengths``: padding
    changes nothing (features, zeros at padded steps, last step, final state); ``layers(x)[-1]``
    equals the features; ``recurrent_weights()`` are parameters; each hook in ``supported_hooks`` is
    called; a fresh build loads the ``state_dict`` and gives the same outputs.
    """
    config = _instance(schema)
    label = _label(config)
    torch.manual_seed(seed)
    net = build("backbone", config, input_size=input_size)
    assert isinstance(net, Backbone), f"{label}: builds a {type(net).__name__}, not a rnnlab.backbone.Backbone"
    size = getattr(net, "output_size", None)
    assert isinstance(size, int) and size >= 1, f"{label}: output_size must be a positive int, got {size!r}"
    assert net.supported_hooks <= BACKBONE_HOOKS, (
        f"{label}: supported_hooks {sorted(net.supported_hooks - BACKBONE_HOOKS)} are not backbone hooks "
        f"(valid: {', '.join(sorted(BACKBONE_HOOKS))})"
    )
    b, t = batch, steps

    # forward and backward, in training mode
    net.train()
    x = torch.randn(b, t, input_size, requires_grad=True)  # (B, T, C)
    out = net(x)
    assert isinstance(out, tuple) and len(out) == 2, f"{label}: forward must return (features, final_state)"
    features, final = out
    assert features.shape == (b, t, size), (
        f"{label}: features have shape {tuple(features.shape)}, expected (B, T, output_size) = {(b, t, size)}"
    )
    _flat(final)  # a state of tensors
    assert torch.isfinite(features).all(), f"{label}: non-finite features"
    last = net.last_step(features)
    assert last.shape == (b, size), f"{label}: last_step gives {tuple(last.shape)}, expected {(b, size)}"
    (features.pow(2).mean() + last.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), f"{label}: no finite gradient reaches the input"
    for pname, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{label}: parameter {pname} gets no gradient"
            assert torch.isfinite(p.grad).all(), f"{label}: parameter {pname} has a non-finite gradient"

    # eval mode: deterministic
    net.eval()
    x = torch.randn(b, t, input_size)
    with torch.no_grad():
        first, final = net(x)
        second, final2 = net(x)
    assert torch.equal(first, second) and _close(final, final2), f"{label}: two eval-mode passes differ"

    with torch.no_grad():
        if _takes(net.forward, "state"):
            again, state = net(x, state=final)
            assert again.shape == first.shape and [s.shape for s in _flat(state)] == [s.shape for s in _flat(final)], (
                f"{label}: forward(x, state=final_state) must accept the state it returns, in the same layout"
            )
        # A backward direction reads the future: chunks compose only for a one-directional backbone.
        if _takes(net.forward, "state") and not getattr(net, "bidirectional", False):
            k = t // 2
            head, state = net(x[:, :k])
            tail, final2 = net(x[:, k:], state=state)
            assert _close(torch.cat([head, tail], dim=1), first), (
                f"{label}: two chunks with the final state handed over differ from one pass "
                "(forward(x, state=...) must start from state)"
            )
            assert _close(final2, final), f"{label}: the final state after two chunks differs from one pass's"
        if _takes(net.forward, "lengths"):
            _check_lengths(net, label, input_size)
        layers = net.layers(x)
        assert isinstance(layers, list) and layers, f"{label}: layers(x) must return a non-empty list"
        assert all(h.shape[:2] == (b, t) for h in layers), f"{label}: layers(x) must give (B, T, H_l) per layer"
        assert _close(layers[-1], first), f"{label}: layers(x)[-1] differs from forward's features"
    params = {id(p) for p in net.parameters()}
    for wname, w in net.recurrent_weights().items():
        assert isinstance(w, Tensor) and id(w) in params, (
            f"{label}: recurrent_weights()[{wname!r}] is not one of the backbone's parameters"
        )

    # every declared hook is called (the layer-output hook only between layers)
    in_loop = set(net.supported_hooks) - {"weight_penalty"}
    if len(layers) < 2:
        in_loop.discard("transform_layer_output")
    recorder, calls = _hook_recorder(net.supported_hooks)
    net.use_regularizers([recorder])
    with torch.no_grad():
        hooked = net(x)[0]
    net.use_regularizers([])
    assert _close(hooked, first), f"{label}: identity regularizer hooks changed the features"
    silent = sorted(in_loop - set(calls))
    assert not silent, f"{label}: declares {silent} in supported_hooks but never calls them (self.hooked(...))"

    # a fresh build restores from the state_dict (as a checkpoint loads)
    torch.manual_seed(seed + 1)
    twin = build("backbone", config, input_size=input_size)
    twin.load_state_dict(net.state_dict())
    twin.eval()
    with torch.no_grad():
        assert _close(twin(x)[0], first), f"{label}: a fresh build with the loaded state_dict gives other outputs"
    return net


def _check_lengths(net: Backbone, label: str, input_size: int) -> None:
    short, long = torch.randn(1, 4, input_size), torch.randn(1, 7, input_size)
    lengths = torch.tensor([4, 7])

    def padded(fill: float) -> Tensor:
        junk = torch.full((1, 3, input_size), fill)
        return torch.cat([torch.cat([short, junk], dim=1), long])  # (2, 7, C)

    feats, state = net(padded(99.0), lengths=lengths)
    feats2, state2 = net(padded(-7.0), lengths=lengths)
    alone, _ = net(short)
    assert _close(feats, feats2) and _close(state, state2), f"{label}: the values at padded steps change results"
    assert _close(feats[:1, :4], alone), f"{label}: padding changes a shorter sequence's features"
    assert (feats[0, 4:] == 0).all(), f"{label}: features at padded steps must be zeros"
    assert _close(feats[1:], net(long)[0]), f"{label}: lengths change a full-length sequence's features"
    last = net.last_step(feats, lengths)
    assert _close(last[:1], net.last_step(alone)), f"{label}: last_step(features, lengths) is not the last valid step"
    # the final state at the last valid step: a padded batch of equal lengths vs the same batch unpadded
    other = torch.randn(1, 4, input_size)
    both = torch.cat([short, other])  # (2, 4, C)
    junk = torch.full((2, 3, input_size), 99.0)
    _, padded_state = net(torch.cat([both, junk], dim=1), lengths=torch.tensor([4, 4]))
    assert _close(padded_state, net(both)[1]), f"{label}: the final state is not the state at the last valid step"
