"""Schema of UCR/UEA time-series classification. Light: no torch, no sktime."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rnnlab.errors import ConfigError
from rnnlab.schemas import SequenceConfig, check_choice, check_range

#: The classification sets sktime 1.2 bundles in its wheel (``sktime/datasets/data/``): they load
#: with no network. Any other UCR/UEA set loads from its .ts files with ``path``.
DATASETS = (
    "ACSF1",  # 10 classes of appliance power, 1 channel, 1,460 steps; 100 / 100
    "ArrowHead",  # 3 classes, 1 channel, 251 steps; 36 / 175
    "BasicMotions",  # 4 activities, 6 channels (accelerometer, gyroscope), 100 steps; 40 / 40
    "GunPoint",  # 2 classes, 1 channel, 150 steps; 50 / 150
    "ItalyPowerDemand",  # 2 classes, 1 channel, 24 steps; 67 / 1,029
    "JapaneseVowels",  # 9 speakers, 12 channels, 7 to 29 steps (variable length); 270 / 370
    "OSULeaf",  # 6 classes, 1 channel, 427 steps; 200 / 242
    "PLAID",  # 11 appliances, 1 channel, 100 to 1,344 steps (variable length); 537 / 537
)

INSTALL = "pip install 'rnnlab[ucr]'"


def ts_files(path: str, dataset: str) -> tuple[Path, Path]:
    """The (train, test) .ts files ``path`` names: a ``*_TRAIN.ts`` file (its ``*_TEST.ts`` beside
    it), or a folder holding ``<dataset>_TRAIN.ts`` and ``<dataset>_TEST.ts``, directly or in
    ``<dataset>/`` (the archive's layout). A missing file is a ConfigError naming ``path``."""
    where = Path(path).expanduser()
    if where.is_file():
        if not where.name.endswith("_TRAIN.ts"):
            raise ConfigError("path", f"expected a <name>_TRAIN.ts file (its _TEST.ts beside it), got {where.name!r}")
        train = where
    elif where.is_dir():
        candidates = [where / f"{dataset}_TRAIN.ts", where / dataset / f"{dataset}_TRAIN.ts"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(
                "path", f"no {dataset}_TRAIN.ts in {str(where)!r} or its {dataset}/ folder (set data.dataset)"
            )
        train = found
    else:
        raise ConfigError("path", f"not found: {str(where)!r}")
    test = train.with_name(train.name[: -len("_TRAIN.ts")] + "_TEST.ts")
    if not test.is_file():
        raise ConfigError("path", f"{train.name} has no {test.name} beside it")
    return train, test


@dataclass
class UCRConfig(SequenceConfig):
    """A UCR/UEA classification set, through the optional extra ``rnnlab[ucr]`` (sktime, which
    bundles the sets of :data:`DATASETS` and reads .ts files).

    The published train / test split; validation is ``val_fraction`` of each class of the published
    training split (drawn with ``seed``). Channels are standardized with the mean and standard
    deviation of the training split's values. Series of unequal length are right-padded with zeros
    and batches carry their lengths: the backbone never reads the padding. Classes are the labels in
    sorted order (numerically when every label is a number).

    ``path``: the user's own set instead, a ``<name>_TRAIN.ts`` file (with ``<name>_TEST.ts`` beside
    it) or a folder holding ``<dataset>_TRAIN.ts`` / ``_TEST.ts`` directly or in ``<dataset>/``.
    """

    name: str = "ucr"
    dataset: str = "GunPoint"
    path: str | None = None
    val_fraction: float = 0.2  # of each class of the published training split
    seed: int = 0  # the validation draw
    # the sets are small (GunPoint trains on 40 series): 16 gives a few steps an epoch
    batch_size: int = 16
    kind: ClassVar[str] = "classification"
    impl: ClassVar[str] = "rnnlab_plugins.data.ucr:UCRDataModule"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "val_fraction", gt=0, lt=1)
        check_range(self, "seed", ge=0)
        if self.path is None:
            check_choice(self, "dataset", DATASETS)
        else:
            ts_files(self.path, self.dataset)
        if importlib.util.find_spec("sktime") is None:  # finds it without importing it
            raise ConfigError("", f"the ucr data module needs sktime, which is not installed: {INSTALL}")
