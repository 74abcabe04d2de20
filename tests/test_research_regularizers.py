"""The research regularizers: variational dropout, weight drop, zoneout, embedding dropout, input noise."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from rnnlab_plugins.backbones.config import GRUConfig, LSTMConfig
from rnnlab_plugins.regularizers.config import (
    EmbeddingDropoutConfig,
    InputNoiseConfig,
    VariationalDropoutConfig,
    WeightDropConfig,
    ZoneoutConfig,
)

from rnnlab.errors import ConfigError
from rnnlab.model import SequenceNet
from rnnlab.task import TaskSpec
from rnnlab.testing import build, check_regularizer

SCHEMAS = [VariationalDropoutConfig, WeightDropConfig, ZoneoutConfig, EmbeddingDropoutConfig, InputNoiseConfig]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_the_regularizer_contract(schema):
    check_regularizer(schema)


def _net(backbone_schema, *regs, input_size=3, tokens=False):
    torch.manual_seed(0)
    backbone = build("backbone", backbone_schema, input_size=input_size)
    task = TaskSpec(input_size=input_size, output_size=1, target="per_step", tokens=tokens)
    return SequenceNet(backbone, task, regularizers=[build("regularizer", r) for r in regs])


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_each_changes_training_and_is_off_in_eval(schema):
    """Training outputs differ from the plain net's; eval outputs equal them (zoneout: its
    expectation, which differs unless p = 0)."""
    config = schema()
    lstm = LSTMConfig(hidden_size=6, num_layers=2)
    plain, regularized = _net(lstm), _net(lstm, config)
    regularized.load_state_dict(plain.state_dict())
    x = torch.randn(4, 7, 3)
    regularized.train()
    assert not torch.allclose(regularized(x), plain.train()(x))
    plain.eval(), regularized.eval()
    if schema is ZoneoutConfig:
        torch.testing.assert_close(regularized(x), regularized(x))  # deterministic in eval
        zero = _net(lstm, ZoneoutConfig(p_hidden=0.0, p_cell=0.0))
        zero.load_state_dict(plain.state_dict())
        torch.testing.assert_close(zero.eval()(x), plain(x), rtol=0, atol=1e-5)
    else:
        torch.testing.assert_close(regularized(x), plain(x), rtol=0, atol=1e-5)


def test_variational_dropout_masks_a_unit_for_the_whole_sequence():
    from rnnlab_plugins.regularizers.research import VariationalDropout

    reg = VariationalDropout(p_input=0.5, p_hidden=0.5, p_output=0.5).train()
    h = torch.ones(8, 20, 16)
    out = reg.transform(h)
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same at every step
    assert set(out.unique().tolist()) == {0.0, 2.0}


def test_embedding_dropout_drops_every_occurrence_of_a_token_type():
    from rnnlab_plugins.regularizers.research import EmbeddingDropout

    reg = EmbeddingDropout(p=0.5).train()
    ids = torch.randint(0, 5, (6, 30))
    one_hot = torch.nn.functional.one_hot(ids, 5).float()
    kept = reg.transform_inputs(one_hot).sum(-1)  # (B, T): 0 where the step's token was dropped
    for b in range(6):
        for token in ids[b].unique():
            values = kept[b][ids[b] == token]
            assert values.unique().numel() == 1  # all occurrences alike: dropped or kept (x2)


def test_weight_drop_keeps_the_fused_kernel_and_zoneout_selects_cells(caplog):
    gru = GRUConfig(hidden_size=5)
    assert _net(gru, WeightDropConfig()).backbone.kernel == "fused"
    with caplog.at_level(logging.INFO):
        net = _net(gru, ZoneoutConfig())
    assert net.backbone.kernel == "cell"
    assert "Zoneout acts inside the recurrence: backbone.kernel=cell (explicit cells) selected" in caplog.text


def test_zoneout_keeps_previous_states_with_its_probability():
    """p_hidden = 1 in training: every unit keeps its initial state, so a GRU's outputs stay zero."""
    net = _net(GRUConfig(hidden_size=5), ZoneoutConfig(p_hidden=0.999999, p_cell=0.0)).train()
    features = net.features(torch.randn(3, 6, 3))
    assert features.abs().max() < 1e-3


def test_weight_drop_masks_the_recurrent_weight_afresh_each_pass():
    from rnnlab_plugins.regularizers.research import WeightDrop

    reg = WeightDrop(p=0.5).train()
    w = torch.ones(8, 8)
    a, b = reg.transform_recurrent_weight("weight_hh_l0", w), reg.transform_recurrent_weight("weight_hh_l0", w)
    assert not torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(reg.eval().transform_recurrent_weight("weight_hh_l0", w), w)


@pytest.mark.parametrize(
    ("schema", "kwargs", "message"),
    [
        (VariationalDropoutConfig, {"p_hidden": 1.0}, "p_hidden: must be < 1"),
        (ZoneoutConfig, {"p_cell": -0.1}, "p_cell: must be >= 0"),
        (InputNoiseConfig, {"sigma": -1.0}, "sigma: must be >= 0"),
    ],
)
def test_bad_values_name_the_key(schema, kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        schema(**kwargs)


def test_a_run_with_every_research_regularizer_trains_and_records_them(small_cfg, workdir):
    from mlflow.tracking import MlflowClient

    from rnnlab.train import train

    names = ",".join(s.name for s in SCHEMAS)
    metrics = train(small_cfg("backbone=lstm", "backbone.num_layers=2", f"regularizer=[{names}]"))
    assert math.isfinite(metrics["test/rmse"])
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert run.data.params["regularizer.zoneout.p_hidden"] == "0.05"
    assert run.data.params["regularizer.weight_drop.p"] == "0.2"
