"""Lightning Trainer flags rnnlab checks before torch is imported: the accepted values of
``precision``, ``accelerator`` and ``strategy`` (tests/test_config.py compares them with the installed
Lightning) and the forms ``devices`` takes."""

from __future__ import annotations

from typing import Any

from rnnlab.errors import ConfigError

# Lightning's accepted values, kept here so a typo fails before torch is imported;
# tests/test_config.py checks these lists against the installed Lightning.
PRECISIONS = (
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "64",
    "32",
    "16",
    "bf16",
)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
_DDP = ("ddp", "ddp_fork", "ddp_notebook", "ddp_spawn")
_DEEPSPEED_STAGES = ("1", "2", "2_offload", "3", "3_offload", "3_offload_nvme")
STRATEGIES = (
    "auto",
    *_DDP,
    *(f"{d}_find_unused_parameters_{flag}" for d in _DDP for flag in ("false", "true")),
    "deepspeed",
    *(f"deepspeed_stage_{stage}" for stage in _DEEPSPEED_STAGES),
    *("fsdp", "fsdp_cpu_offload", "single_device", "single_tpu", "single_xla", "xla", "xla_debug"),
)


def check_devices(devices: Any) -> None:
    """Lightning's ``devices``: "auto", a count (-1: all), a list of ids, or "0,1" / "-1"."""
    if isinstance(devices, bool):
        raise ConfigError("devices", f"must be 'auto', a count or a list of device ids, got {devices}")
    if isinstance(devices, int):
        if devices == 0 or devices < -1:
            raise ConfigError("devices", f"must be >= 1 (or -1 for all), got {devices}")
        return
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto" or text == "-1":
            return
        parts = [p.strip() for p in text.strip(",").split(",")]
        if parts and all(p.isdigit() for p in parts):
            return
        raise ConfigError("devices", f"must be 'auto', a count or a list of device ids, got {devices!r}")
    if (
        isinstance(devices, (list, tuple))
        and devices
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    ):
        return
    raise ConfigError("devices", f"must be 'auto', a count or a list of device ids, got {devices!r}")
