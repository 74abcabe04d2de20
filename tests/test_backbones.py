"""Every registered backbone and regularizer: shapes, backward, options (parametrized over the registry)."""

import pickle

import pytest
import torch

from rnnlab.registry import backbones, regularizers
from rnnlab.regularizer import Regularizer


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


# -- the interface the next plugins build on: state in/out, lengths, per-layer outputs, hooks ------


def _backbone(name, bidirectional=False, num_layers=2, dropout=0.0, input_size=3):
    torch.manual_seed(0)
    kwargs = backbones.schema(name)().kwargs()
    kwargs.update(hidden_size=5, num_layers=num_layers, dropout=dropout, bidirectional=bidirectional)
    return backbones.create(name, input_size=input_size, **kwargs).eval()


def _close(a, b):
    if isinstance(a, tuple):
        return all(_close(x, y) for x, y in zip(a, b, strict=True))
    return torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", backbones.names())
def test_final_state_carries_over_to_the_next_chunk(name):
    """Two chunks with the state handed over equal one pass over the whole sequence (truncated BPTT)."""
    net = _backbone(name)
    x = torch.randn(2, 10, 3)
    whole, final = net(x)
    first, state = net(x[:, :6])
    second, final2 = net(x[:, 6:], state)
    assert _close(torch.cat([first, second], dim=1), whole)
    assert _close(final2, final)


@pytest.mark.parametrize("name", backbones.names())
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_a_sequence(name, bidirectional):
    net = _backbone(name, bidirectional)
    short, long = torch.randn(1, 4, 3), torch.randn(1, 7, 3)
    padded = torch.cat([torch.cat([short, torch.full((1, 3, 3), 99.0)], dim=1), long])  # (2, 7, 3), junk padding
    lengths = torch.tensor([4, 7])
    feats, state = net(padded, lengths=lengths)
    alone, alone_state = net(short)
    assert feats.shape == (2, 7, net.output_size)
    assert _close(feats[:1, :4], alone)
    assert (feats[0, 4:] == 0).all()  # padded steps give zeros
    assert _close(net.last_step(feats, lengths)[:1], net.last_step(alone))
    first_of = (lambda s: s[:, :1]) if not isinstance(state, tuple) else (lambda s: tuple(t[:, :1] for t in s))
    assert _close(first_of(state), alone_state)  # the state at the last valid step
    assert _close(feats[1:], net(long)[0])


@pytest.mark.parametrize("name", backbones.names())
@pytest.mark.parametrize("bidirectional", [False, True])
def test_per_layer_outputs(name, bidirectional):
    net = _backbone(name, bidirectional, num_layers=3)
    x = torch.randn(2, 6, 3)
    layers = net.layers(x)
    assert [t.shape for t in layers] == [(2, 6, net.output_size)] * 3
    assert _close(layers[-1], net(x)[0])
    lengths = torch.tensor([6, 3])
    assert _close(net.layers(x, lengths=lengths)[-1], net(x, lengths=lengths)[0])
    state = net(x)[1]
    assert _close(net.layers(x, state)[-1], net(x, state)[0])
    assert not set(net.state_dict()) - {k for k, _ in net.named_parameters()}  # no extra keys
    again = pickle.loads(pickle.dumps(net))  # helpers made for the layer-by-layer path are not pickled
    assert _close(again.layers(x)[-1], layers[-1])


class _Recorder(Regularizer):
    """Overrides every hook; records the calls and changes nothing."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def transform_inputs(self, x):
        self.calls.append(("inputs", tuple(x.shape)))
        return x

    def transform(self, features):
        self.calls.append(("transform", tuple(features.shape)))
        return features

    def penalty(self, features, lengths=None):
        self.calls.append(("penalty", None if lengths is None else lengths.tolist()))
        return features.sum() * 0

    def transform_layer_output(self, h, layer):
        self.calls.append(("layer_output", layer))
        return h

    def transform_recurrent_weight(self, name, weight):
        self.calls.append(("recurrent_weight", name))
        return weight

    def weight_penalty(self, weights):
        self.calls.append(("weight_penalty", tuple(sorted(weights))))
        return sum(w.pow(2).sum() for w in weights.values()) * 0


class _CellHook(Regularizer):
    def transform_cell_state(self, c, c_prev, layer):
        return c


def _net(backbone, regs, target="last"):
    from rnnlab.model import SequenceNet
    from rnnlab.task import TaskSpec

    return SequenceNet(backbone, TaskSpec(input_size=3, output_size=1, target=target), regs)


@pytest.mark.parametrize("name", backbones.names())
def test_every_regularizer_hook_the_backbone_supports_is_called(name):
    backbone = _backbone(name, bidirectional=True)
    rec = _Recorder()
    net = _net(backbone, [rec])
    net.train()
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 2])
    h = net.features(x, lengths)
    net.head_out(h, lengths)
    assert net.penalties(h, lengths)
    calls = [c[0] for c in rec.calls]
    assert calls.count("layer_output") == 1 and ("layer_output", 0) in rec.calls  # between layers 0 and 1 only
    weights = {c[1] for c in rec.calls if c[0] == "recurrent_weight"}
    assert weights == {"weight_hh_l0", "weight_hh_l0_reverse", "weight_hh_l1", "weight_hh_l1_reverse"}
    assert ("inputs", (2, 5, 3)) in rec.calls and ("transform", (2, 5, 10)) in rec.calls
    assert ("penalty", [5, 2]) in rec.calls
    assert ("weight_penalty", tuple(sorted(weights))) in rec.calls
    # the no-op hooks change nothing: the same features as without the regularizer
    assert _close(h, _net(_backbone(name, bidirectional=True), []).train().features(x, lengths))


def test_a_weight_hook_acts_without_touching_the_parameter():
    class ZeroRecurrence(Regularizer):
        def transform_recurrent_weight(self, name, weight):
            return weight * 0

    backbone = _backbone("rnn", num_layers=1)
    before = backbone.rnn.weight_hh_l0.detach().clone()
    x = torch.randn(1, 4, 3)
    backbone.use_regularizers([ZeroRecurrence()])
    out, _ = backbone(x)
    p = dict(backbone.rnn.named_parameters())
    expected = torch.tanh(x @ p["weight_ih_l0"].T + p["bias_ih_l0"] + p["bias_hh_l0"])  # no h_{t-1} term
    assert _close(out, expected)
    assert torch.equal(backbone.rnn.weight_hh_l0, before)
    out.sum().backward()
    assert backbone.rnn.weight_ih_l0.grad is not None


@pytest.mark.parametrize("name", backbones.names())
def test_a_cell_state_hook_runs_an_lstm_as_explicit_cells_and_is_moot_elsewhere(name):
    net = _net(_backbone(name), [_CellHook()])
    assert net.backbone.kernel == ("cell" if "lstm" in name else "fused")  # rnn and gru have no cell state


def test_a_hook_the_backbone_cannot_call_is_refused():
    from rnnlab.backbone import Backbone

    class Plain(Backbone):  # calls no hook inside the recurrence
        output_size = 4

    with pytest.raises(ValueError, match="needs transform_cell_state, which backbone Plain does not call"):
        Plain().use_regularizers([_CellHook()])


def test_a_per_step_backbone_gets_the_cell_state_hook():
    """The contract for explicit-cell backbones: a backbone that declares the per-step hooks gets them."""
    from rnnlab.backbone import Backbone

    class TinyLSTMCell(Backbone):
        supported_hooks = frozenset({"transform_hidden_state", "transform_cell_state"})

        def __init__(self, input_size, hidden_size=4):
            super().__init__()
            self.cell = torch.nn.LSTMCell(input_size, hidden_size)
            self.output_size = hidden_size

        def forward(self, x, state=None, lengths=None):
            h = c = x.new_zeros(x.size(0), self.output_size)
            if state is not None:
                h, c = state
            outs = []
            for x_t in x.unbind(1):
                h_new, c_new = self.cell(x_t, (h, c))
                for reg in self.hooked("transform_cell_state"):
                    c_new = reg.transform_cell_state(c_new, c, 0)
                for reg in self.hooked("transform_hidden_state"):
                    h_new = reg.transform_hidden_state(h_new, h, 0)
                h, c = h_new, c_new
                outs.append(h)
            return torch.stack(outs, 1), (h, c)

    seen = []

    class Zoneout(Regularizer):
        def transform_cell_state(self, c, c_prev, layer):
            seen.append("c")
            return c_prev  # keep every cell unit: c_t = c_{t-1}

        def transform_hidden_state(self, h, h_prev, layer):
            seen.append("h")
            return h

    net = _net(TinyLSTMCell(3), [Zoneout()])
    _, (_, c) = net.encode(torch.randn(2, 3, 3))
    assert seen == ["c", "h"] * 3 and (c == 0).all()


def test_ar_tar_with_lengths_ignores_padding():
    reg = regularizers.create("ar_tar", alpha=2.0, beta=1.0)
    h = torch.tensor([[[1.0], [3.0]]])  # (B=1, T=2, H=1)
    padded = torch.cat([h, torch.full((1, 3, 1), 50.0)], dim=1)
    assert reg.penalty(padded, lengths=torch.tensor([2])).item() == pytest.approx(reg.penalty(h).item())


def test_the_lstm_forget_gate_bias_starts_at_one_unless_asked_otherwise():
    """Jozefowicz et al. 2015: b_ih's forget rows at forget_bias, b_hh's at 0 (the sum is exact);
    the other gates keep torch's init. forget_bias=null is torch's init throughout."""
    from rnnlab_plugins.backbones.config import LSTMConfig

    from rnnlab.testing import build

    h = 6
    for fb in (1.0, 2.5):
        net = build(
            "backbone", LSTMConfig(hidden_size=h, num_layers=2, bidirectional=True, forget_bias=fb), input_size=3
        )
        biases = {n: p.detach() for n, p in net.rnn.named_parameters() if n.startswith("bias_ih")}
        assert len(biases) == 4
        for name, b_ih in biases.items():
            b_hh = dict(net.rnn.named_parameters())[name.replace("bias_ih", "bias_hh")].detach()
            assert torch.equal(b_ih[h : 2 * h] + b_hh[h : 2 * h], torch.full((h,), fb))
            assert b_ih[:h].abs().max() <= 1 / h**0.5 and b_ih[:h].std() > 0  # i: torch's uniform init
    torch.manual_seed(0)
    plain = build("backbone", LSTMConfig(hidden_size=h, forget_bias=None), input_size=3)
    torch.manual_seed(0)
    reference = torch.nn.LSTM(3, h, batch_first=True)
    for a, b in zip(plain.rnn.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)
