"""data=chars: character-level language modelling on the standard library's source or a user's file."""

from __future__ import annotations

import ast
import math
import re
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from rnnlab_plugins.data.chars import UNK, UNK_CHAR, CharsDataModule, sample, stdlib_files
from rnnlab_plugins.data.chars_config import CharsConfig

from rnnlab.errors import ConfigError
from rnnlab.model import SequenceNet
from rnnlab.registry import backbones, data_modules
from rnnlab.testing import check_data_module

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _chars(**kwargs) -> CharsDataModule:
    dm = data_modules.create("chars", **kwargs)
    dm.setup("fit")
    return dm


def _decode(ids: torch.Tensor, vocab: tuple[str, ...]) -> str:
    return "".join(UNK_CHAR if i == 0 else vocab[i] for i in ids.tolist())


def _net(dm: CharsDataModule, backbone: str = "lstm", hidden: int = 24, layers: int = 2, seed: int = 0) -> SequenceNet:
    """An untrained net for ``dm``, its weights drawn wide (std 4 / sqrt(fan-in)) so that its greedy
    text varies: with the default init one character wins at every step, which would hide a lost
    state; at this width 15-36 distinct characters come out of 120 steps."""
    torch.manual_seed(seed)
    task = dm.task()
    net = SequenceNet(
        backbones.create(backbone, input_size=task.input_size, hidden_size=hidden, num_layers=layers), task
    )
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 4.0 / p.shape[-1] ** 0.5 if p.dim() > 1 else 0.1)
    return net.eval()


# ----------------------------------------------------------------------------- the data


def test_contract_on_the_stdlib_and_on_a_file():
    dm = check_data_module(CharsConfig(max_chars=30_000, length=50))
    assert dm.describe()["source"].endswith("stdlib") and dm.describe()["chars"] == 30_000
    assert dm.describe()["first_file"] == stdlib_files()[0].name == "__future__.py"
    dm = check_data_module(CharsConfig(path=str(STDLIB / "textwrap.py"), length=40, batch_size=16), seed=3)
    assert dm.describe()["chars"] == len((STDLIB / "textwrap.py").read_text(encoding="utf-8"))
    task = dm.task()
    assert task.kind == "language_model" and task.tokens and task.input_size == task.output_size == len(dm.vocab)
    assert task.classes == dm.vocab and dm.vocab[0] == UNK
    assert set(task.metrics) == {"accuracy", "perplexity", "bpc"}


def test_stdlib_is_read_in_sorted_order_and_cut_at_max_chars():
    files = stdlib_files()
    assert files == sorted(files) and all(p.parent == STDLIB for p in files)
    assert not any(p.name.startswith("_sysconfigdata") for p in files)
    dm = _chars(max_chars=40_000, length=50)
    whole = "".join(dm.texts[s] for s in ("train", "val", "test"))
    expected = "".join(p.read_text(encoding="utf-8") for p in files[: dm.describe()["files"]])[:40_000]
    assert whole == expected
    assert dm.describe()["last_file"] == files[dm.describe()["files"] - 1].name


def test_splits_are_disjoint_contiguous_and_chunks_are_the_text():
    dm = _chars(max_chars=50_000, length=63, val_fraction=0.1, test_fraction=0.15)
    whole = "".join(dm.texts[s] for s in ("train", "val", "test"))
    assert len(whole) == 50_000
    assert dm.bounds == {"train": (0, 37_500), "val": (37_500, 42_500), "test": (42_500, 50_000)}
    seen: set[int] = set()
    for split, (start, stop) in dm.bounds.items():
        x, y = dm.splits[split]
        offsets = dm.offsets[split]
        assert x.shape == y.shape == (len(offsets), 63) and x.dtype == y.dtype == torch.int64
        assert len(offsets) == (stop - start) // 64
        positions = {int(o) + j for o in offsets for j in range(64)}
        assert min(positions) >= start and max(positions) < stop
        assert not positions & seen, f"{split} shares character positions with an earlier split"
        seen |= positions
        for i in (0, len(offsets) // 2, len(offsets) - 1):
            chunk = whole[offsets[i] : offsets[i] + 64]
            known = [c if c in dm.vocab[1:] else UNK_CHAR for c in chunk]
            assert _decode(x[i], dm.vocab) == "".join(known[:-1])
            assert _decode(y[i], dm.vocab) == "".join(known[1:])  # the next character at every step
        assert torch.equal(x[:, 1:], y[:, :-1])


def test_vocabulary_is_the_training_text_and_unseen_characters_are_unk(tmp_path):
    # train (first 60%) has a-c, an accented letter and a character beyond the BMP; val adds 'x',
    # test adds the euro sign and 'x'; neither may enter the vocabulary
    train = ("abcab\u00e9\U0001f40d\n" * 75)[:600]
    val = ("abx\n" * 50)[:200]
    test = ("c\u20acxa" * 50)[:200]
    path = tmp_path / "text.txt"
    path.write_text(train + val + test, encoding="utf-8")
    dm = _chars(path=str(path), length=9, val_fraction=0.2, test_fraction=0.2)
    assert dm.texts == {"train": train, "val": val, "test": test}
    assert dm.vocab == (UNK, "\n", "a", "b", "c", "\u00e9", "\U0001f40d")
    assert int((dm.splits["train"][0] == 0).sum()) == 0  # no unk in the training part
    for split, unseen in (("val", "x"), ("test", "\u20acx")):
        x, y = dm.splits[split]
        ids = torch.cat([x, y[:, -1:]], dim=1).reshape(-1)  # the split's chunks, characters in order
        chars = "".join(dm.texts[split][o : o + 10] for o in dm.offsets[split] - dm.bounds[split][0])
        expected = torch.tensor([0 if c in unseen else dm.vocab.index(c) for c in chars])
        assert torch.equal(ids, expected)
        assert dm.describe()[f"unk_{split}"] == sum(dm.texts[split].count(c) for c in unseen) > 0
    # a baseline's view agrees: unk is never a training target
    counts = dm.class_counts("train")
    assert counts[0] == 0 and counts[1:].min() > 0


def test_same_config_same_data_whatever_the_seed():
    a = _chars(max_chars=20_000, length=30, shuffle_seed=0)
    b = _chars(max_chars=20_000, length=30, shuffle_seed=7)
    assert a.vocab == b.vocab and a.describe() == b.describe()
    for split in ("train", "val", "test"):
        assert all(torch.equal(s, t) for s, t in zip(a.splits[split], b.splits[split], strict=True))
    assert len(a.describe()["text_sha256"]) == 16


def test_a_bom_is_not_a_character_and_crlf_is_kept(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff".encode() + b"line one\r\nline two\r\n" * 40)
    dm = _chars(path=str(path), length=8)
    assert "\ufeff" not in dm.vocab and "\r" in dm.vocab
    assert dm.describe()["chars"] == 20 * 40


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"path": "/nonexistent/book.txt"}, r"^path: file not found: '/nonexistent/book.txt'$"),
        ({"path": "DIR"}, r"^path: is a directory, not a text file"),
        ({"path": "LATIN1"}, r"^data.path: latin1.txt is not UTF-8 text \(byte 3: invalid"),
        ({"path": "SHORT"}, r"^data.path: too short: .*short.txt \(300 characters\); .*length \+ 1 = 101"),
        ({"path": "EMPTY"}, r"^data.path: too short: .*empty.txt \(0 characters\)"),
        ({"max_chars": 1000}, r"^data.max_chars: too short: the first 1,000 characters; .* 900 / 50 / 50"),
        ({"length": 1}, r"^length: must be >= 2, got 1$"),
        ({"max_chars": 0}, r"^max_chars: must be >= 1, got 0$"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"^test_fraction: val_fraction \+ test_fraction must be < 1"),
        ({"sample_temperature": -0.1}, r"^sample_temperature: must be >= 0"),
        ({"sample_chars": -1}, r"^sample_chars: must be >= 0"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_bad_inputs_are_one_line_errors_naming_the_key(tmp_path, options, message):
    files = {
        "DIR": tmp_path,
        "LATIN1": tmp_path / "latin1.txt",
        "SHORT": tmp_path / "short.txt",
        "EMPTY": tmp_path / "empty.txt",
    }
    files["LATIN1"].write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 100)
    files["SHORT"].write_text("x = 1\n" * 50, encoding="utf-8")
    files["EMPTY"].write_bytes(b"")
    options = {k: str(files[v]) if v in files else v for k, v in options.items()}
    with pytest.raises(ConfigError, match=message) as err:
        _chars(**options)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("backbone", ["lstm", "gru"])
def test_sampling_near_zero_temperature_is_greedy_decoding_of_the_whole_sequence(backbone):
    dm = _chars(max_chars=20_000, length=40)
    net = _net(dm, backbone)
    prompt = dm.prompt()
    n = 120
    near_zero = sample(net, dm.vocab, prompt, n, 1e-6, torch.Generator().manual_seed(0))
    greedy = sample(net, dm.vocab, prompt, n, 0.0, torch.Generator().manual_seed(1))
    assert near_zero == greedy and len(greedy) == n
    # the whole text at once through the net: at every step from the prompt's last character on,
    # the most likely next character is the one the step-by-step sampler wrote
    index = {c: i for i, c in enumerate(dm.vocab) if i > 0}
    ids = torch.tensor([[index.get(c, 0) for c in prompt + greedy]])  # (1, P + n)
    with torch.no_grad():
        logits = net(ids)[0]  # (P + n, V)
    assert _decode(logits[len(prompt) - 1 : -1].argmax(-1), dm.vocab) == greedy
    # a strong check: the text varies, and forgetting the state between steps would change it
    assert len(set(greedy)) >= 5
    stateless = []
    with torch.no_grad():
        last = ids[:, len(prompt) - 1 : len(prompt)]  # (1, 1)
        for _ in range(n):
            last = net(last)[:, -1].argmax(-1, keepdim=True)  # (1, 1), from a zero state each step
            stateless.append(int(last))
    assert _decode(torch.tensor(stateless), dm.vocab) != greedy


def test_the_same_seed_gives_the_same_text():
    dm = _chars(max_chars=20_000, length=40)
    net = _net(dm, hidden=16, layers=1)
    write = lambda seed: sample(net, dm.vocab, "def f(x):\n", 200, 1.0, torch.Generator().manual_seed(seed))  # noqa: E731
    first = write(0)
    assert write(0) == first and write(1) != first
    assert len(first) == 200 and set(first) <= set(dm.vocab[1:]) | {UNK_CHAR}
    assert not net.training  # as it was
    net.train()
    write(0)
    assert net.training


def test_report_files_writes_a_sample_headed_by_temperature_and_prompt(tmp_path):
    dm = _chars(max_chars=20_000, length=60, sample_chars=150, sample_temperature=0.5, shuffle_seed=4)
    net = _net(dm, hidden=16, layers=1)
    (path,) = dm.report_files(tmp_path / "plots", net, None, "lstm on chars")
    assert path == tmp_path / "plots" / "sample.txt"
    header, _, body = path.read_text(encoding="utf-8").partition("\n")
    prompt = dm.prompt()
    assert "temperature 0.5" in header and "seed 4" in header and repr(prompt) in header
    assert 0 < len(prompt) <= 60 and dm.texts["test"].startswith(prompt, dm.texts["test"].find("\n") + 1)
    assert body == prompt + sample(net, dm.vocab, prompt, 150, 0.5, torch.Generator().manual_seed(4))
    written = path.read_text(encoding="utf-8")
    (again,) = dm.report_files(tmp_path / "plots", net, None, "lstm on chars")
    assert again.read_text(encoding="utf-8") == written  # the run's seed, the same text
    assert _chars(max_chars=20_000, length=60, sample_chars=0).report_files(tmp_path, net, None, "x") == []


# ----------------------------------------------------------------------------- a real run


def test_a_cli_run_logs_bits_per_character(workdir):
    from conftest import run_cli
    from mlflow.tracking import MlflowClient

    res = run_cli(
        [
            "data=chars",
            "data.max_chars=20000",
            "data.length=50",
            "backbone=lstm",
            "backbone.hidden_size=16",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "logger.log_model=false",
            "logger.log_checkpoint=false",
        ],
        workdir,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "test/bpc" in res.stdout
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert run.info.status == "FINISHED"
    metrics, params = run.data.metrics, run.data.params
    assert 0 < metrics["test/bpc"] < math.log2(params_vocab := int(params["data.vocab"])) + 1
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / math.log(2), rel=1e-5)
    assert metrics["test/perplexity"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-4)
    assert params["data.chars"] == "20000" and params["data.source"].endswith("stdlib") and params_vocab > 50
    assert np.isfinite(metrics["val/bpc"])
    # the run's text sample, written by the trained net after the start of the test text
    sample_txt = Path(client.download_artifacts(run.info.run_id, "sample.txt", str(workdir)))
    header, _, body = sample_txt.read_text(encoding="utf-8").partition("\n")
    assert "500 characters sampled at temperature 0.8 (seed 42)" in header
    prompt = ast.literal_eval(re.search(r"after the prompt (.+) \(the start of the test text\)$", header)[1])
    assert body.startswith(prompt) and len(body) == len(prompt) + 500
