"""Task kinds: TaskSpec's kinds, token inputs, the classification heads and losses, the sequence
tasks' scores, and their baseline plugins (mean, majority, memoryless, unigram) against hand values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from rnnlab.baseline import best, evaluate, verdict
from rnnlab.model import SequenceModel, SequenceNet
from rnnlab.registry import backbones, baselines
from rnnlab.sequences import SequenceDataModule
from rnnlab.task import KIND_METRICS, TaskSpec, higher_is_better


class ToyTask(SequenceDataModule):
    """Hand-made splits of a given kind: every test here knows the exact answer."""

    def __init__(self, kind: str, splits: dict[str, tuple[torch.Tensor, ...]], **spec: Any) -> None:
        super().__init__(batch_size=4, eval_batch_size=8)
        self.kind = kind
        self._given = splits
        self._spec = spec

    def load(self) -> dict[str, tuple[torch.Tensor, ...]]:
        return self._given

    def task(self) -> TaskSpec:
        return self.spec(**self._spec)


def _fitted(name: str, dm: SequenceDataModule) -> Any:
    plugin = baselines.create(name)
    assert plugin.serves(dm.task().kind)
    assert plugin.why_not(dm) is None
    plugin.fit(dm)
    return plugin


# -- TaskSpec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, kind",
    [
        (dict(target="last", loss="mse", forecast=True), "forecast"),
        (dict(target="last", loss="mse"), "regression"),
        (dict(target="per_step", loss="mae"), "per_step_regression"),
        (dict(target="last", loss="cross_entropy"), "classification"),
        (dict(target="per_step", loss="cross_entropy"), "per_step_classification"),
        (dict(target="per_step", loss="cross_entropy", language_model=True, tokens=True), "language_model"),
    ],
)
def test_every_kind_from_its_target_loss_and_flags(spec: dict[str, Any], kind: str) -> None:
    assert TaskSpec(input_size=3, output_size=3, **spec).kind == kind
    assert "loss" in KIND_METRICS[kind]


@pytest.mark.parametrize(
    "spec, message",
    [
        (dict(target="last", loss="cross_entropy", language_model=True), "language_model"),
        (dict(target="per_step", loss="mse", forecast=True), "forecast"),
        (dict(classes=("a", "b")), "classes needs 3"),
    ],
)
def test_impossible_task_specs_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskSpec(input_size=3, output_size=3, **spec)


def test_accuracy_is_the_only_higher_is_better_metric_among_the_kinds() -> None:
    assert higher_is_better("test/accuracy") and higher_is_better("f1")
    assert not any(higher_is_better(m) for m in ("loss", "bpc", "perplexity", "mse", "rmse", "val/loss"))


# -- the net: token inputs, heads, losses -----------------------------------------------------------


def _net(task: TaskSpec, name: str = "gru") -> SequenceNet:
    torch.manual_seed(0)
    return SequenceNet(backbones.create(name, input_size=task.input_size, hidden_size=5), task)


def test_token_inputs_are_one_hot_encoded_inside_the_net() -> None:
    tokens = TaskSpec(input_size=6, output_size=6, target="per_step", loss="cross_entropy", tokens=True)
    floats = TaskSpec(input_size=6, output_size=6, target="per_step", loss="cross_entropy")
    ids = torch.randint(0, 6, (3, 7))
    a, b = _net(tokens), _net(floats)
    b.load_state_dict(a.state_dict())
    out = a(ids)
    assert out.shape == (3, 7, 6)
    torch.testing.assert_close(out, b(torch.nn.functional.one_hot(ids, 6).float()))


@pytest.mark.parametrize("per_step", [False, True])
def test_classification_heads_train_on_cross_entropy_and_learn_a_rule(per_step: bool) -> None:
    """The class is the sign of the sum of the inputs so far: an LSTM learns it to >90 % in a few
    hundred steps, which no head or loss wired wrongly would."""
    task = TaskSpec(input_size=1, output_size=2, target="per_step" if per_step else "last", loss="cross_entropy")
    torch.manual_seed(0)
    x = torch.randn(512, 8, 1)
    running = (x.cumsum(1)[..., 0] > 0).long()  # (N, T)
    y = running if per_step else running[:, -1]
    net = SequenceNet(backbones.create("lstm", input_size=1, hidden_size=16), task)
    model = SequenceModel(net, task, optimizer=lambda params: torch.optim.Adam(params, lr=0.02))
    opt = model.configure_optimizers()
    for _ in range(150):
        opt.zero_grad()
        loss = model._loss(net.outputs(x)[1], y)
        loss.backward()
        opt.step()
    accuracy = (net(x).argmax(-1) == y).float().mean().item()
    assert accuracy > 0.9, accuracy


def test_epoch_metrics_of_a_language_model_are_exact() -> None:
    """loss, accuracy, perplexity and bits per token from the summed batches equal a hand computation."""
    task = TaskSpec(
        input_size=4, output_size=4, target="per_step", loss="cross_entropy", tokens=True, language_model=True,
        metrics=("accuracy", "perplexity", "bpc"),
    )  # fmt: skip
    model = SequenceModel(_net(task), task, optimizer=lambda params: torch.optim.SGD(params, lr=0.1)).eval()
    x, y = torch.randint(0, 4, (5, 6)), torch.randint(0, 4, (5, 6))
    logged: dict[str, float] = {}
    model.log_dict = lambda d, **kw: logged.update({k: float(v) for k, v in d.items()})  # type: ignore[method-assign]

    class Strategy:
        @staticmethod
        def reduce(v: torch.Tensor, reduce_op: str) -> torch.Tensor:
            return v

    model._trainer = type("T", (), {"strategy": Strategy()})()  # type: ignore[assignment]
    model._sums = {}
    model._eval_step((x[:2], y[:2]))
    model._eval_step((x[2:], y[2:]))
    model._epoch_metrics("val")
    with torch.no_grad():
        logits = model.net(x)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, 4), y.reshape(-1)).item()
    assert logged["val/loss"] == pytest.approx(nll, rel=1e-5)
    assert logged["val/bpc"] == pytest.approx(nll / math.log(2), rel=1e-5)
    assert logged["val/perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert logged["val/accuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())


# -- scores and baselines ---------------------------------------------------------------------------


def _classes(n: int, k: int, seed: int, p: list[float] | None = None) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.choice(k, size=n, p=p))


def test_majority_scores_the_majority_class_accuracy_and_the_prior_cross_entropy() -> None:
    p = [0.6, 0.3, 0.1]
    sizes = (("train", 400), ("val", 50), ("test", 300))
    splits = {s: (torch.randn(n, 4, 2), _classes(n, 3, i, p)) for i, (s, n) in enumerate(sizes)}
    dm = ToyTask("classification", splits, input_size=2, output_size=3, classes=("a", "b", "c"))
    majority = _fitted("majority", dm)
    scores = dm.score(majority.predict(dm, "test"), "test")
    train, test = splits["train"][1].numpy(), splits["test"][1].numpy()
    prior = (np.bincount(train, minlength=3) + 0.5) / (len(train) + 1.5)
    assert scores["accuracy"] == pytest.approx(np.mean(test == np.argmax(prior)))
    assert scores["loss"] == pytest.approx(-np.mean(np.log(prior[test])))
    assert "'a'" in majority.describe()


def test_memoryless_is_the_copy_formula_on_a_copy_layout() -> None:
    """Blanks everywhere but the last S steps, which are uniform over A symbols: the per-position
    prior scores S ln A / (T + 2S), the copy task's memoryless baseline."""
    delay, symbols, alphabet, n = 20, 5, 4, 6000
    length = delay + 2 * symbols

    def copy_targets(seed: int, count: int) -> torch.Tensor:
        y = torch.zeros(count, length, dtype=torch.long)
        y[:, -symbols:] = torch.from_numpy(np.random.default_rng(seed).integers(1, alphabet + 1, (count, symbols)))
        return y

    sizes = (("train", n), ("val", 10), ("test", n))
    splits = {s: (torch.zeros(c, length, dtype=torch.long), copy_targets(i, c)) for i, (s, c) in enumerate(sizes)}
    dm = ToyTask("per_step_classification", splits, input_size=alphabet + 2, output_size=alphabet + 1, tokens=True)
    results = evaluate({"memoryless": baselines.create("memoryless"), "majority": baselines.create("majority")}, dm)
    formula = symbols * math.log(alphabet) / length
    assert results["memoryless"]["loss"] == pytest.approx(formula, rel=0.01)
    assert results["majority"]["loss"] > results["memoryless"]["loss"]
    assert best(results, "loss") == "memoryless"


def test_memoryless_refuses_variable_lengths() -> None:
    y = torch.zeros(4, 3, dtype=torch.long)
    splits = {s: (torch.zeros(4, 3, dtype=torch.long), y, torch.tensor([3, 2, 1, 3])) for s in ("train", "val", "test")}
    dm = ToyTask("per_step_classification", splits, input_size=2, output_size=2, tokens=True)
    assert "lengths" in baselines.create("memoryless").why_not(dm)


def test_unigram_scores_the_test_text_under_training_frequencies() -> None:
    sizes = (("train", 200), ("val", 5), ("test", 100))
    text = {s: _classes(n * 8, 5, i, [0.4, 0.3, 0.2, 0.05, 0.05]).reshape(n, 8) for i, (s, n) in enumerate(sizes)}
    splits = {s: (ids, ids) for s, ids in text.items()}  # targets are what counts here
    dm = ToyTask("language_model", splits, input_size=5, output_size=5, tokens=True)
    scores = dm.score(_fitted("unigram", dm).predict(dm, "test"), "test")
    counts = np.bincount(text["train"].reshape(-1).numpy(), minlength=5) + 0.5
    nll = -np.mean(np.log((counts / counts.sum())[text["test"].reshape(-1).numpy()]))
    assert scores["loss"] == pytest.approx(nll)
    assert scores["bpc"] == pytest.approx(nll / math.log(2))
    assert scores["perplexity"] == pytest.approx(math.exp(nll))


def test_mean_predicts_the_training_mean_the_adding_problems_0_167() -> None:
    """Two uniform values summed: predicting their mean, 1.0, scores their variance, 1/6."""
    rng = np.random.default_rng(0)
    splits = {
        s: (torch.randn(n, 3, 2), torch.from_numpy(rng.random((n, 2)).sum(1, keepdims=True)).float())
        for s, n in (("train", 20000), ("val", 10), ("test", 20000))
    }
    dm = ToyTask("regression", splits, input_size=2, output_size=1)
    mean = _fitted("mean", dm)
    assert mean.mean == pytest.approx([1.0], abs=0.01)
    assert dm.score(mean.predict(dm, "test"), "test")["mse"] == pytest.approx(1 / 6, rel=0.03)


def test_per_step_scores_count_valid_steps_only() -> None:
    y = torch.tensor([[1, 1, 0], [1, 0, 0]])
    splits = {s: (torch.zeros(2, 3, dtype=torch.long), y, torch.tensor([2, 1])) for s in ("train", "val", "test")}
    dm = ToyTask("per_step_classification", splits, input_size=2, output_size=2, tokens=True)
    right = np.eye(2)[np.ones((2, 3), dtype=int)] * 50  # class 1 everywhere: right at every valid step
    assert dm.score(right, "test")["accuracy"] == 1.0
    assert dm.class_counts("train").tolist() == [0.0, 3.0]


def test_a_baseline_of_another_kind_is_left_out_silently() -> None:
    splits = {s: (torch.randn(3, 2, 1), torch.randn(3, 1)) for s in ("train", "val", "test")}
    dm = ToyTask("regression", splits, input_size=1, output_size=1)
    results = evaluate({n: baselines.create(n) for n in ("persistence", "majority", "unigram", "mean")}, dm)
    assert list(results) == ["mean"]


def test_verdict_compares_accuracies_by_error_rate() -> None:
    results = {"majority": {"accuracy": 0.6}}
    line = verdict(0.96, results, "accuracy")
    assert "majority" in line and "10.00x lower: it wins" in line
    assert "higher: it loses" in verdict(0.5, results, "accuracy")
    assert best({"a": {"accuracy": 0.6}, "b": {"accuracy": 0.7}}, "accuracy") == "b"


def test_monitoring_an_accuracy_needs_monitor_mode_max() -> None:
    from rnnlab.errors import ConfigError
    from rnnlab.schemas import TrainConfig

    with pytest.raises(ConfigError, match=r"monitor_mode: val/accuracy is better higher.*set monitor_mode=max"):
        TrainConfig(monitor="val/accuracy")
    TrainConfig(monitor="val/accuracy", monitor_mode="max")
    with pytest.raises(ConfigError, match="set monitor_mode=min"):
        TrainConfig(monitor="val/bpc", monitor_mode="max")
