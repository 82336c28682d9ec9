"""Where a run's model lives: the devices this machine has, and waiting for one before a clock is read."""

from __future__ import annotations

from typing import Any

from effbench.errors import EffbenchError

CPU = "cpu"


def device_type(device: str) -> str:
    """``cuda:1`` as ``cuda``: techniques declare device types, not device indexes."""
    return device.partition(":")[0]


def available_devices() -> list[str]:
    """This machine's devices as torch sees them, GPUs first (``auto`` takes the first)."""
    import torch

    found = [f"cuda:{index}" for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if torch.backends.mps.is_available():
        found.append("mps")
    return [*found, CPU]


def resolve_device(requested: str) -> str:
    """The device a run uses: ``auto`` is the first GPU, else cpu; a GPU this machine lacks is an error."""
    if requested == CPU:
        return CPU  # without importing torch
    import torch

    present = available_devices()
    if requested == "auto":
        return present[0]
    resolved = "cuda:0" if requested == "cuda" else requested
    if resolved not in present:
        raise EffbenchError(
            f"device {requested!r} is not on this machine (torch {torch.__version__}); available: {', '.join(present)}"
        )
    return resolved


def synchronize(device: Any) -> None:
    """Wait until the device has finished its queued work, so a clock read next times finished work (no-op on cpu)."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()
