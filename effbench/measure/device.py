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


# Dense peak FLOP/s from the vendors' datasheets (no sparsity), by a name fragment torch reports and dtype:
# what MFU divides the achieved FLOP/s by. fp32 is without TF32 (torch's default for matmuls).
PEAK_FLOPS = {
    "H100": {"float32": 67e12, "bfloat16": 989e12, "float16": 989e12},
    "A100": {"float32": 19.5e12, "bfloat16": 312e12, "float16": 312e12},
    "L4": {"float32": 30.3e12, "bfloat16": 121e12, "float16": 121e12},
    "V100": {"float32": 15.7e12, "float16": 125e12},
    "T4": {"float32": 8.1e12, "float16": 65e12},
}


def peak_flops(device: str, dtype: str) -> tuple[float | None, str]:
    """The device's peak FLOP/s for ``dtype``, or None and why it is unknown (a CPU's depends on SIMD and clocks)."""
    if device_type(device) != "cuda":
        return None, f"no peak FLOP/s is known for device {device!r}: MFU is reported for the GPUs of PEAK_FLOPS"
    import torch

    name = torch.cuda.get_device_name(device)
    for fragment, peaks in PEAK_FLOPS.items():
        if fragment in name:
            if dtype in peaks:
                return peaks[dtype], ""
            return None, f"no {dtype} peak FLOP/s is known for {name}"
    return None, f"no peak FLOP/s is known for {name}; known: {', '.join(PEAK_FLOPS)}"
