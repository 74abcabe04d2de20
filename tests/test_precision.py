"""Reduced precision and where the data lives (the GPU path, as far as a CPU can check it; the
GPU's own checks are in tests/test_gpu.py)."""

import math

import pytest

from rnnlab.data import placement
from rnnlab.train import build, slow_path, train


@pytest.mark.slow  # four small trainings, about 40 s
@pytest.mark.parametrize("kernel", ["fused", "cell"])
def test_bf16_mixed_trains_on_the_cpu(small_cfg, kernel):
    """bf16 autocast is the CPU's mixed precision: the fused module and the hand-written cells both
    train under it, and the results stay close to float32's."""
    full = train(small_cfg("backbone=lstm", f"backbone.kernel={kernel}"))
    mixed = train(small_cfg("backbone=lstm", f"backbone.kernel={kernel}", "trainer.precision=bf16-mixed"))
    assert math.isfinite(mixed["test/loss"])
    assert mixed["test/loss"] != full["test/loss"]  # it did run in bf16
    assert abs(mixed["test/loss"] - full["test/loss"]) < 0.5 * full["test/loss"] + 0.05


def test_slow_path_is_named_only_on_a_gpu_in_reduced_precision(small_cfg):
    cell = build(small_cfg("backbone=lstm", "backbone.kernel=cell"))[1].net
    fused = build(small_cfg("backbone=lstm"))[1].net
    line = slow_path(cell, "bf16-mixed", "cuda")
    assert line is not None and "backbone.kernel=cell" in line and "bf16-mixed" in line
    assert slow_path(cell, "16-mixed", "cuda") is not None
    assert slow_path(fused, "bf16-mixed", "cuda") is None
    assert slow_path(cell, "32-true", "cuda") is None
    assert slow_path(cell, "bf16-mixed", "cpu") is None
    # a regularizer acting inside the recurrence selects the cells: that is named too
    zoneout = build(small_cfg("backbone=lstm", "regularizer=[zoneout]"))[1].net
    assert slow_path(zoneout, "bf16-mixed", "cuda") is not None


def test_data_moves_to_the_device_when_it_fits_a_quarter_of_free_memory():
    assert placement(100, 400) == "device"
    assert placement(101, 400) == "pinned"
    assert placement(0, 0) == "device"
    assert placement(10, 100, share=0.05) == "pinned"
