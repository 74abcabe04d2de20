"""Character-level language modelling on real text, and a sampler that writes text with the net.

The text: by default the Python standard library's source, the top-level ``*.py`` modules under
the running interpreter's ``Lib/`` (``sysconfig.get_paths()["stdlib"]``; no subpackage, so no
``test/``, ``idlelib/``, ``tkinter/`` ..., and no generated ``_sysconfigdata_*``), read in sorted
file-name order and joined; or any UTF-8 file (``path``). Either is cut at ``max_chars``. The
standard library differs between Python versions: ``describe()`` (logged as the run's ``data.*``
params) names the version, the files, the character count and a hash of the text.

Splits are contiguous by position (train | val | test). The vocabulary is the training part's
characters in code-point order, ids 1..V; id 0 is ``<unk>``, which every character that never
occurs in the training part becomes (in val and test alike). Each split is cut into non-overlapping
chunks of ``length + 1`` characters (a shorter tail is dropped): inputs are a chunk's first
``length`` ids (N, length), targets its last ``length`` (N, length): the next character at every
step.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnlab.errors import ConfigError
from rnnlab.sequences import SequenceDataModule
from rnnlab.task import TaskSpec

log = logging.getLogger(__name__)

UNK = "<unk>"  # token 0: a character the training part never has
UNK_CHAR = "\ufffd"  # how a sampled <unk> is written out (the Unicode replacement character)


def stdlib_files() -> list[Path]:
    """The default corpus' files, in the order they are read: the interpreter's top-level standard
    library modules, sorted by name, without the build's generated ``_sysconfigdata_*``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.is_file() and not p.name.startswith("_sysconfigdata"))


def encode(text: str, vocab: tuple[str, ...]) -> np.ndarray:
    """Token ids (int64) of ``text``'s characters: 1..V for ``vocab[1:]`` (sorted characters), 0
    (``<unk>``) for any other."""
    chars = np.array([ord(c) for c in vocab[1:]], dtype=np.int64)  # sorted: vocab is built sorted
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)  # (n,) code points
    at = np.searchsorted(chars, codes)  # (n,) where each would sit in the vocabulary
    found = chars[np.minimum(at, len(chars) - 1)] == codes
    return np.where(found, at + 1, 0)


class CharsDataModule(SequenceDataModule):
    kind = "language_model"

    def __init__(
        self,
        *,
        path: str | None,
        max_chars: int,
        length: int,
        val_fraction: float,
        test_fraction: float,
        sample_chars: int,
        sample_temperature: float,
        batch_size: int,
        eval_batch_size: int,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, shuffle_seed=shuffle_seed)
        self.path = path
        self.max_chars = max_chars
        self.length = length
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.sample_chars = sample_chars
        self.sample_temperature = sample_temperature
        self.vocab: tuple[str, ...] = ()  # (<unk>, the training part's characters in code-point order)
        self.texts: dict[str, str] = {}  # each split's text, as cut from the whole
        self.bounds: dict[str, tuple[int, int]] = {}  # each split's [start, stop) in the text
        self.offsets: dict[str, np.ndarray] = {}  # where each chunk of a split starts in the text
        self._source: dict[str, Any] = {}

    # -- the text -----------------------------------------------------------------------------------

    def read(self) -> tuple[str, bool]:
        """The text, cut at ``max_chars``, and whether it was cut."""
        if self.path is not None:
            return self._read_file(Path(self.path).expanduser())
        return self._read_stdlib()

    def _read_file(self, path: Path) -> tuple[str, bool]:
        if path.is_dir():
            raise ConfigError("data.path", f"is a directory, not a text file: {str(path)!r}")
        try:
            # utf-8-sig: a byte-order mark is no character of the text
            with path.open(encoding="utf-8-sig", newline="") as f:
                text = f.read(self.max_chars + 1)
        except FileNotFoundError:
            raise ConfigError("data.path", f"file not found: {str(path)!r}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                "data.path", f"{path.name} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8"
            ) from None
        self._source = {"source": str(path), "files": 1}
        return text[: self.max_chars], len(text) > self.max_chars

    def _read_stdlib(self) -> tuple[str, bool]:
        files = stdlib_files()
        if not files:
            root = sysconfig.get_paths()["stdlib"]
            raise ConfigError("data.path", f"no standard library source (*.py) under {root!r}: name a text file")
        parts: list[str] = []
        size = 0
        for file in files:
            if size > self.max_chars:
                break
            parts.append(file.read_text(encoding="utf-8"))  # PEP 3120: the standard library is UTF-8
            size += len(parts[-1])
        used = files[: len(parts)]
        self._source = {
            "source": f"python {platform.python_version()} stdlib",
            "stdlib": str(used[0].parent),
            "files": len(used),
            "first_file": used[0].name,
            "last_file": used[-1].name,
        }
        text = "".join(parts)
        return text[: self.max_chars], size > self.max_chars

    # -- splits ---------------------------------------------------------------------------------------

    def load(self) -> dict[str, tuple[Tensor, ...]]:
        text, cut = self.read()
        n = len(text)
        n_val, n_test = int(n * self.val_fraction), int(n * self.test_fraction)
        n_train = n - n_val - n_test
        need = self.length + 1
        if min(n_train, n_val, n_test) < need:
            key = "data.max_chars" if cut else "data.path"
            what = f"the first {n:,} characters" if cut else f"{self._source['source']} ({n:,} characters)"
            fractions = f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction}"
            raise ConfigError(
                key,
                f"too short: {what}; every split needs a sequence of length + 1 = {need} characters "
                f"({fractions} give {n_train:,} / {n_val:,} / {n_test:,}); give more text or a smaller data.length",
            )
        self.bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
        self.texts = {split: text[start:stop] for split, (start, stop) in self.bounds.items()}
        self.vocab = (UNK, *sorted(set(self.texts["train"])))
        self._source["chars"] = n
        self._source["text_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

        splits: dict[str, tuple[Tensor, ...]] = {}
        for split, (start, _) in self.bounds.items():
            ids = encode(self.texts[split], self.vocab)  # (m,)
            k = len(ids) // need
            chunks = torch.from_numpy(ids[: k * need].reshape(k, need))  # (k, length + 1)
            splits[split] = (chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous())  # (k, length) each
            self.offsets[split] = start + np.arange(k) * need
            if split != "train":
                self._source[f"unk_{split}"] = int((ids == 0).sum())
        return splits

    def task(self) -> TaskSpec:
        if not self.splits:
            self.setup("fit")
        size = len(self.vocab)
        return self.spec(input_size=size, output_size=size, tokens=True, classes=self.vocab)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = dict(super().describe())
        if self.splits:
            info.update(self._source, vocab=len(self.vocab))
        return info

    # -- a text sample with the run ---------------------------------------------------------------------

    def prompt(self) -> str:
        """The start of the test text: up to ``length`` characters from its first line start (its
        first character when no line starts among the first ``length``), cut after the last line
        end among them when that keeps at least half, so the sample starts on a new line."""
        if not self.splits:
            self.setup("fit")
        text = self.texts["test"]
        start = text.find("\n", 0, self.length) + 1  # 0 without a line end
        head = text[start : start + self.length]
        end = head.rfind("\n") + 1
        return head[:end] if end > len(head) // 2 else head

    def report_files(self, out_dir: Path, net: Any, results: Any, title: str) -> list[Path]:
        """``out_dir/sample.txt``: ``sample_chars`` characters written by ``net`` at
        ``sample_temperature`` after the prompt (:meth:`prompt`), from a generator seeded with the
        run's seed; its first line says the temperature, the seed and the prompt."""
        if self.sample_chars == 0:
            return []
        prompt = self.prompt()
        generator = torch.Generator().manual_seed(self.shuffle_seed)
        text = sample(net, self.vocab, prompt, self.sample_chars, self.sample_temperature, generator)
        header = (
            f"# {title}: {self.sample_chars} characters sampled at temperature {self.sample_temperature:g} "
            f"(seed {self.shuffle_seed}) after the prompt {prompt!r} (the start of the test text)\n"
        )
        path = Path(out_dir) / "sample.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + prompt + text, encoding="utf-8")
        return [path]


def sample(
    net: Any, vocab: tuple[str, ...], prompt: str, n: int, temperature: float, generator: torch.Generator
) -> str:
    """``n`` characters that ``net`` (a :class:`rnnlab.model.SequenceNet` of a character task)
    writes after ``prompt``, one step at a time, the backbone's state carried from step to step.

    ``vocab``: the token names (``CharsDataModule.vocab``, ``TaskSpec.classes``): ``vocab[0]`` is
    ``<unk>``, which any prompt character outside the vocabulary becomes and which is written as
    U+FFFD. Each character is drawn from ``softmax(logits / temperature)`` with ``generator`` (a
    CPU generator); ``temperature=0`` takes the most likely one (greedy decoding)."""
    if not prompt:
        raise ValueError("sample() needs a prompt of at least one character")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    index = {c: i for i, c in enumerate(vocab) if i > 0}
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out: list[int] = []
    try:
        with torch.no_grad():
            x = torch.tensor([[index.get(c, 0) for c in prompt]], device=device)  # (1, P)
            h, state = net.encode(net.embed(x))  # (1, P, H), the state after the prompt
            for step in range(n):
                logits = net.head_out(h[:, -1:])[0, -1].double().cpu()  # (V,) for the next character
                if temperature == 0:
                    token = int(logits.argmax())
                else:
                    probs = torch.softmax(logits / temperature, dim=-1)  # (V,)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                out.append(token)
                if step < n - 1:
                    x = torch.tensor([[token]], device=device)  # (1, 1)
                    h, state = net.encode(net.embed(x), state=state)  # (1, 1, H)
    finally:
        net.train(was_training)
    return "".join(UNK_CHAR if t == 0 else vocab[t] for t in out)
