"""The money resource: a price table that turns measured time and energy into US dollars."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from effbench.errors import EffbenchError

# Approximate defaults (round figures, meant to be overridden in a suite's `prices`).
# US average retail price of electricity for commercial customers, EIA Electric Power Monthly, 2024: ~13 ¢/kWh.
DEFAULT_USD_PER_KWH = 0.13
# On-demand rental per hour, 2024 list prices (a GPU's price stands for its share of the whole rented machine):
DEFAULT_HARDWARE_USD_PER_HOUR: dict[str, float] = {
    "cpu-core": 0.048,  # AWS m6i.large (general purpose, 2 vCPU) in us-east-1: $0.096/h ÷ 2 vCPU
    "H100": 3.00,  # GPU clouds (Lambda, RunPod) list ~$2.5-3.3/GPU-h; hyperscalers charge more
    "A100": 1.50,  # GPU clouds: 40GB ~$1.3, 80GB ~$1.8/GPU-h; AWS p4d.24xlarge ~$4.1/GPU-h
    "L40S": 1.00,  # GPU clouds ~$0.8-1.0/GPU-h; listed so that "L4" does not price an L40S
    "L4": 0.80,  # AWS g6.xlarge (1 L4, 4 vCPU): ~$0.80/h
    "A10G": 1.00,  # AWS g5.xlarge (1 A10G, 4 vCPU): ~$1.01/h
    "T4": 0.53,  # AWS g4dn.xlarge (1 T4, 4 vCPU): ~$0.53/h
    "RTX 4090": 0.40,  # community GPU clouds (RunPod, Vast.ai) ~$0.3-0.7/h
}

NonNegative = Annotated[float, Field(ge=0)]


class Prices(BaseModel):
    """Prices used to express a run's time and energy in money; stored with every result."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    usd_per_kwh: NonNegative = Field(DEFAULT_USD_PER_KWH, description="electricity price in $ per kWh")
    hardware_usd_per_hour: dict[str, NonNegative] = Field(
        default_factory=lambda: dict(DEFAULT_HARDWARE_USD_PER_HOUR),
        description="rental $ per hour: 'cpu-core' (per core), a GPU name fragment, or an exact CPU model",
    )

    @field_validator("hardware_usd_per_hour")
    @classmethod
    def _over_defaults(cls, value: dict[str, float]) -> dict[str, float]:
        """Setting one device's price keeps the defaults for all the others; an empty name would match every GPU."""
        if any(not key.strip() for key in value):
            raise ValueError("empty device name; expected 'cpu-core', a GPU name fragment (A100) or an exact CPU model")
        return {**DEFAULT_HARDWARE_USD_PER_HOUR, **value}


def resolve(prices: Prices, probes: dict[str, Any]) -> dict[str, Any]:
    """Pick this machine's hourly price from the probe data, saying which price was used and why."""
    gpus = (probes.get("gpu") or {}).get("names") or []
    base = {"usd_per_kwh": prices.usd_per_kwh}
    if gpus:
        return {**_gpu_price(prices.hardware_usd_per_hour, gpus), **base}
    return {**_cpu_price(prices.hardware_usd_per_hour, probes.get("cpu") or {}), **base}


def _gpu_price(table: dict[str, float], names: list[str]) -> dict[str, Any]:
    parts, total = [], 0.0
    for name, count in Counter(names).items():
        keys = [key for key in table if key.lower() in name.lower()]
        if not keys:
            raise EffbenchError(
                f"no price for GPU {name!r}: known hardware prices are {', '.join(sorted(table))}; "
                f'add prices.hardware_usd_per_hour["{name}"] ($ per GPU-hour) to the suite'
            )
        key = max(keys, key=len)  # the most specific: "A100 80GB" beats "A100"
        total += table[key] * count
        parts.append((f"{count} × {name}", f"{key} {table[key]:g} $/h × {count} GPU{'s' * (count != 1)}"))
    return {
        "device": " + ".join(device for device, _ in parts),
        "usd_per_hour": total,
        "basis": " + ".join(basis for _, basis in parts),
    }


def _cpu_price(table: dict[str, float], cpu: dict[str, Any]) -> dict[str, Any]:
    model = cpu.get("model") or "unknown CPU"
    if model in table:
        return {"device": model, "usd_per_hour": table[model], "basis": f"{model} (whole machine) {table[model]:g} $/h"}
    cores = cpu.get("usable_cores") or cpu.get("logical_cores")
    if not cores:
        raise EffbenchError(
            f"cannot price CPU {model!r}: its core count is unknown; "
            f'add prices.hardware_usd_per_hour["{model}"] ($ per hour for the whole machine) to the suite'
        )
    per_core = table["cpu-core"]
    plural = "s" * (cores != 1)
    return {
        "device": f"{cores} core{plural} of {model}",
        "usd_per_hour": per_core * cores,
        "basis": f"cpu-core {per_core:g} $/h × {cores} core{plural}",
    }


def cost(price: dict[str, Any], seconds: float, kwh: float | None) -> dict[str, float | None]:
    """Money for a run from its duration and energy, given a price from ``resolve``."""
    hardware = price["usd_per_hour"] * seconds / 3600
    energy = None if kwh is None else kwh * price["usd_per_kwh"]
    # Rental prices usually include power, so the total is an upper bound; both parts are kept for readers.
    return {"hardware_usd": hardware, "energy_usd": energy, "total_usd": hardware + (energy or 0.0)}
