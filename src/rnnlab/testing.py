"""Contract checks for plugin authors: call them from your own tests.

Each check builds the plugin from its schema the way a run does (``Impl(**schema.kwargs(), ...)``
through a :class:`rnnlab.registry.Registry`), exercises the interface rnnlab relies on and raises
``AssertionError`` with a message naming the plugin and what is wrong. No pytest needed::

    from rnnlab.testing import check_plugin
    from my_pkg.config import MyRNNConfig, SunspotsConfig

    def test_my_rnn():
        check_plugin("backbone", MyRNNConfig(hidden_size=8))

    def test_sunspots():
        check_plugin("data", SunspotsConfig())

- :func:`check_config_round_trip`: the schema is a valid typed config (``OmegaConf.structured``
  -> ``to_object`` gives it back), every field has a default or is ``MISSING``, ``impl`` imports,
  and the constructor takes every field with no default of its own (the schema is the one home).
- :func:`check_backbone`: shapes, final state, backward, eval determinism, state hand-over,
  variable lengths, per-layer outputs, the regularizer hooks it declares, ``state_dict`` reload.
- :func:`check_regularizer`: its hooks keep shapes, its penalty is a finite differentiable scalar,
  and it trains inside a real ``SequenceNet`` on a reference backbone that calls every hook.
- :func:`check_data_module`: ``task()`` agrees with the splits and the batches, batches are
  reproducible from the seed, and ``schema.metrics()`` only names metrics the task reports.

torch is imported here; Lightning only by the checks that need it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from omegaconf import MISSING, OmegaConf
from torch import Tensor, nn

from rnnlab.backbone import Backbone
from rnnlab.registry import Registry
from rnnlab.regularizer import BACKBONE_HOOKS, Regularizer
from rnnlab.schemas import DataConfig, PluginConfig

__all__ = [
    "CHECKS",
    "ReferenceBackbone",
    "build",
    "check_backbone",
    "check_config_round_trip",
    "check_data_module",
    "check_plugin",
    "check_regularizer",
]

_ATOL = 1e-5


# ----------------------------------------------------------------------------- building


def _instance(schema: Any) -> PluginConfig:
    """A schema class -> its default instance; an instance as it is."""
    obj = schema() if isinstance(schema, type) else schema
    assert isinstance(obj, PluginConfig), (
        f"{type(obj).__name__} is not a plugin schema: subclass rnnlab.schemas.PluginConfig"
    )
    return obj


def _label(config: PluginConfig) -> str:
    return f"{type(config).__name__} ({config.name!r}, impl {type(config).impl!r})"


def build(kind: str, schema: Any, **context: Any) -> Any:
    """Build a plugin as a run does: a throwaway ``Registry`` holding only ``schema``, then
    ``Registry.build`` -> ``Impl(**schema.kwargs(), **context)``. ``schema``: class or instance."""
    config = _instance(schema)
    registry = Registry(kind, "rnnlab.testing.none")  # an entry-point group nothing declares
    registry.register(config.name, type(config))
    return registry.build(config, **context)


# ----------------------------------------------------------------------------- config


def _impl_class(schema_cls: type) -> type:
    path = getattr(schema_cls, "impl", "")
    module, sep, attr = str(path).partition(":")
    assert sep and module and attr, f"{schema_cls.__name__}.impl must be 'module:Class', got {path!r}"
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise AssertionError(f"{schema_cls.__name__}.impl {path!r} does not import: {e}") from e
    assert isinstance(cls, type), f"{schema_cls.__name__}.impl {path!r} is not a class"
    return cls


def _constructor_params(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """Keyword parameters of ``cls.__init__`` and its bases while they pass ``**kwargs`` on;
    and whether the chain ends in ``**kwargs`` (which then accepts anything)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass in (nn.Module, object):
            continue
        sig = inspect.signature(vars(klass)["__init__"])
        for p in list(sig.parameters.values())[1:]:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return params, False
    return params, True


def check_config_round_trip(schema: Any) -> None:
    """The schema is a valid typed config and its ``impl`` is a class that takes its fields.

    ``schema``: the class, or an instance (needed when a field is ``MISSING``: the instance's
    values are then round-tripped).
    """
    cls = schema if isinstance(schema, type) else type(schema)
    assert dataclasses.is_dataclass(cls) and issubclass(cls, PluginConfig), (
        f"{cls.__name__} must be a @dataclass subclassing rnnlab.schemas.PluginConfig"
    )
    all_fields = dataclasses.fields(cls)
    name_field = next(f for f in all_fields if f.name == "name")
    assert isinstance(name_field.default, str) and name_field.default not in ("", MISSING), (
        f"{cls.__name__}.name must default to the registry name (e.g. name: str = 'my_rnn')"
    )
    missing: list[str] = []
    for f in dataclasses.fields(cls):
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert not no_default, (
            f"{cls.__name__}.{f.name} has no default: give it one, or `= MISSING` (omegaconf) for a value "
            "the user must set"
        )
        if f.default == MISSING:
            missing.append(f.name)
    try:
        node = OmegaConf.structured(cls)
    except Exception as e:
        raise AssertionError(f"{cls.__name__} is not a valid OmegaConf structured config: {e}") from e
    assert sorted(OmegaConf.missing_keys(node)) == sorted(missing), (
        f"{cls.__name__}: MISSING fields {sorted(missing)} but OmegaConf sees {sorted(OmegaConf.missing_keys(node))}"
    )
    instance = schema if not isinstance(schema, type) else (None if missing else cls())
    if instance is not None:
        back = OmegaConf.to_object(OmegaConf.structured(instance))
        assert back == instance, f"{cls.__name__}: OmegaConf round trip changed the config: {instance} -> {back}"
        assert type(back) is cls, f"{cls.__name__}: OmegaConf round trip gave a {type(back).__name__}"

    impl = _impl_class(cls)
    params, open_ended = _constructor_params(impl)
    fields = {f.name: f for f in all_fields if f.name != "name"}
    unknown = sorted(set(fields) - set(params))
    assert open_ended or not unknown, (
        f"{impl.__name__}.__init__ does not take schema field(s) {unknown} of {cls.__name__}; "
        "every field but `name` is passed as a keyword argument"
    )
    for fname, f in fields.items():
        p = params.get(fname)
        if p is None or p.default is inspect.Parameter.empty:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        raise AssertionError(
            f"{impl.__name__}.__init__ defaults {fname}={p.default!r} ({cls.__name__} says {default!r}): "
            "defaults live in the schema only; drop the constructor's"
        )


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
            return None if hook == "weight_penalty" else args[1] if hook == "transform_recurrent_weight" else args[0]

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
            for step, g_x in enumerate(gates_x.unbind(1)):
                i_g, f_g, g_g, o_g = (g_x + h @ w_hh.T).chunk(4, dim=-1)  # (B, H) each
                c_new = torch.sigmoid(f_g) * c + torch.sigmoid(i_g) * torch.tanh(g_g)
                for reg in self.hooked("transform_cell_state"):
                    c_new = reg.transform_cell_state(c_new, c, i)
                h_new = torch.sigmoid(o_g) * torch.tanh(c_new)
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


# ----------------------------------------------------------------------------- data modules


def check_data_module(schema: Any, *, seed: int = 0, batches: int = 2) -> Any:
    """Build the data module from ``schema`` (with ``shuffle_seed=seed``), set it up and check it
    against its ``task()``: split shapes, batch shapes and sizes, reproducible shuffling, finite
    inputs, ``baseline()`` keys, and ``schema.metrics()`` within what the task reports. Returns it."""
    import pytorch_lightning as pl

    from rnnlab.task import TaskSpec

    config = _instance(schema)
    label = _label(config)
    assert isinstance(config, DataConfig), f"{label}: a data schema subclasses rnnlab.schemas.DataConfig"
    dm: Any = build("data", config, shuffle_seed=seed)
    assert isinstance(dm, pl.LightningDataModule) and hasattr(dm, "task"), (
        f"{label}: builds a {type(dm).__name__}, not a LightningDataModule with task()"
    )
    dm.setup("fit")
    task = dm.task()
    assert isinstance(task, TaskSpec), f"{label}: task() must return a rnnlab.task.TaskSpec, got {type(task).__name__}"

    reported = {"loss", *task.metrics}
    declared = set(config.metrics())
    assert "loss" in declared, f"{label}: metrics() must include 'loss'"
    assert declared <= reported, (
        f"{label}: metrics() declares {sorted(declared - reported)}, which the task does not report "
        f"(task: {sorted(reported)}); monitor/objective are checked against metrics() before a run"
    )

    def check_pair(where: str, x: Tensor, y: Tensor) -> None:
        assert x.dim() == 3 and x.size(-1) == task.input_size, (
            f"{label}: {where} inputs have shape {tuple(x.shape)}, expected (N, T, input_size={task.input_size})"
        )
        assert len(y) == len(x), f"{label}: {where} has {len(x)} inputs but {len(y)} targets"
        assert torch.isfinite(x).all(), f"{label}: {where} inputs are not finite"
        per_step = task.target == "per_step"
        classes = task.loss == "cross_entropy"
        expected: tuple[int, ...] = (x.size(1),) if per_step else ()
        expected += () if classes else (task.output_size,)
        assert tuple(y.shape[1:]) == expected, (
            f"{label}: {where} targets have shape {tuple(y.shape)}, expected (N, *{expected}) for target="
            f"{task.target!r}, loss={task.loss!r}, output_size={task.output_size}"
        )
        if classes:
            assert not y.is_floating_point() and int(y.min()) >= 0 and int(y.max()) < task.output_size, (
                f"{label}: {where} class targets must be integers in [0, {task.output_size})"
            )

    splits = getattr(dm, "splits", None)
    if splits:
        for split in ("train", "val", "test"):
            assert split in splits, f"{label}: no {split!r} split after setup()"
            assert len(splits[split][0]) > 0, f"{label}: the {split!r} split is empty"
            check_pair(f"split {split!r}", splits[split][0], splits[split][1])

    batch_size = getattr(dm, "batch_size", None)
    first = None
    for i, b in enumerate(dm.train_dataloader()):
        if i == batches:
            break
        assert isinstance(b, (tuple, list)) and len(b) in (2, 3), f"{label}: a batch is (x, y) or (x, y, lengths)"
        check_pair("a training batch", b[0], b[1])
        if batch_size is not None:
            assert len(b[0]) <= batch_size, f"{label}: a batch of {len(b[0])} exceeds batch_size={batch_size}"
        if len(b) == 3:
            lengths = b[2]
            assert lengths.shape == (len(b[0]),) and int(lengths.min()) >= 1 and int(lengths.max()) <= b[0].size(1), (
                f"{label}: lengths must be (B,) in [1, T]"
            )
        first = b if first is None else first
    assert first is not None, f"{label}: train_dataloader() yields no batch"
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        b = next(iter(loader), None)
        assert b is not None, f"{label}: {split}_dataloader() yields no batch"
        check_pair(f"a {split} batch", b[0], b[1])

    again = build("data", config, shuffle_seed=seed)
    again.setup("fit")
    repeat = next(iter(again.train_dataloader()))
    assert all(torch.equal(a, c) for a, c in zip(first, repeat, strict=True)), (
        f"{label}: the same shuffle_seed gives other training batches"
    )

    baseline = dm.baseline() if hasattr(dm, "baseline") else {}
    assert isinstance(baseline, dict), f"{label}: baseline() must return a dict"
    for key, value in baseline.items():
        split, _, metric = key.partition("/")
        assert split in ("val", "test") and metric in reported, (
            f"{label}: baseline() key {key!r} must be 'test/<metric>' with a metric the task reports"
        )
        assert isinstance(value, float), f"{label}: baseline()[{key!r}] must be a float"
    return dm


# ----------------------------------------------------------------------------- all at once

CHECKS: dict[str, Callable[..., Any]] = {
    "backbone": check_backbone,
    "data": check_data_module,
    "regularizer": check_regularizer,
}


def check_plugin(kind: str, schema: Any, **kwargs: Any) -> Any:
    """``check_config_round_trip`` then the check for ``kind`` (``backbone``, ``data``,
    ``regularizer``; the keys of ``rnnlab.registry.REGISTRIES``); returns the built plugin."""
    if kind not in CHECKS:
        raise ValueError(f"unknown plugin kind {kind!r}; valid: {', '.join(CHECKS)}")
    check_config_round_trip(schema)
    return CHECKS[kind](schema, **kwargs)
