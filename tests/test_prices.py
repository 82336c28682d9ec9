"""The price table: defaults, suite overrides, picking this machine's price, and the cost arithmetic."""

from __future__ import annotations

import json

import pydantic
import pytest

from effbench.config.prices import DEFAULT_HARDWARE_USD_PER_HOUR, Prices, cost, resolve
from effbench.default_plugins.probes import CpuProbe
from effbench.errors import EffbenchError

A100_80 = "NVIDIA A100-SXM4-80GB"


def gpus(*names: str) -> dict:
    return {"count": len(names), "names": list(names)}


def test_defaults_are_valid_and_include_cpu_and_common_gpus():
    prices = Prices()
    assert Prices.model_validate(prices.model_dump()) == prices
    assert prices.usd_per_kwh == 0.13
    assert {"cpu-core", "H100", "A100", "L4", "L40S", "T4", "A10G", "RTX 4090"} <= set(prices.hardware_usd_per_hour)
    assert all(value >= 0 for value in prices.hardware_usd_per_hour.values())


def test_override_merges_over_defaults():
    prices = Prices.model_validate({"usd_per_kwh": 0.25, "hardware_usd_per_hour": {"A100": 4.1, "MI300X": 3.5}})
    assert prices.usd_per_kwh == 0.25
    assert prices.hardware_usd_per_hour["A100"] == 4.1
    assert prices.hardware_usd_per_hour["MI300X"] == 3.5
    assert prices.hardware_usd_per_hour["cpu-core"] == DEFAULT_HARDWARE_USD_PER_HOUR["cpu-core"]
    assert prices.hardware_usd_per_hour["H100"] == DEFAULT_HARDWARE_USD_PER_HOUR["H100"]
    assert DEFAULT_HARDWARE_USD_PER_HOUR["A100"] != 4.1  # the defaults themselves are untouched


def test_negative_hardware_price_rejected_naming_the_key():
    with pytest.raises(pydantic.ValidationError) as err:
        Prices(hardware_usd_per_hour={"A100": -1.0})
    [error] = err.value.errors()
    assert error["loc"] == ("hardware_usd_per_hour", "A100")
    assert "greater than or equal to 0" in error["msg"]


@pytest.mark.parametrize("bad", [{"usd_per_kwh": -0.1}, {"usd_per_kwh": float("nan")}, {"usd_per_kwhh": 0.1}])
def test_bad_electricity_price_or_unknown_field_rejected(bad):
    with pytest.raises(pydantic.ValidationError):
        Prices.model_validate(bad)


def test_resolve_this_cpu_only_machine():
    cpu = CpuProbe().collect()
    cores = cpu["usable_cores"] or cpu["logical_cores"]
    price = resolve(Prices(), {"cpu": cpu})
    assert price["usd_per_hour"] == pytest.approx(0.048 * cores)
    assert price["usd_per_kwh"] == 0.13
    assert price["device"] == f"{cores} core{'s' * (cores != 1)} of {cpu['model']}"
    assert price["basis"].startswith("cpu-core 0.048 $/h × ")
    assert json.loads(json.dumps(price)) == price  # stored with every result


def test_resolve_cpu_falls_back_to_logical_cores_and_ignores_empty_gpu_probe():
    cpu = {"model": "Intel Xeon Gold", "logical_cores": 4, "usable_cores": None}
    price = resolve(Prices(), {"cpu": cpu, "gpu": {"count": 0, "names": []}})
    assert price == {
        "device": "4 cores of Intel Xeon Gold",
        "usd_per_hour": pytest.approx(0.192),
        "usd_per_kwh": 0.13,
        "basis": "cpu-core 0.048 $/h × 4 cores",
    }


def test_resolve_exact_cpu_model_is_a_whole_machine_price():
    cpu = {"model": "AMD EPYC 7R13", "logical_cores": 8, "usable_cores": 8}
    price = resolve(Prices(hardware_usd_per_hour={"AMD EPYC 7R13": 0.35}), {"cpu": cpu})
    assert price["usd_per_hour"] == 0.35
    assert price["device"] == "AMD EPYC 7R13"
    assert "whole machine" in price["basis"]


def test_resolve_gpus_sum_per_gpu_and_ignore_cpu():
    probes = {"cpu": {"model": "x", "logical_cores": 64, "usable_cores": 64}, "gpu": gpus(A100_80, A100_80)}
    price = resolve(Prices(), probes)
    assert price["usd_per_hour"] == pytest.approx(2 * DEFAULT_HARDWARE_USD_PER_HOUR["A100"])
    assert price["device"] == f"2 × {A100_80}"
    assert price["basis"] == f"A100 {DEFAULT_HARDWARE_USD_PER_HOUR['A100']:g} $/h × 2 GPUs"


def test_resolve_longest_matching_key_wins():
    prices = Prices(hardware_usd_per_hour={"a100-sxm4-80gb": 2.0})
    price = resolve(prices, {"gpu": gpus(A100_80, A100_80)})
    assert price["usd_per_hour"] == pytest.approx(4.0)
    assert price["basis"].startswith("a100-sxm4-80gb 2 $/h")
    l40s = resolve(Prices(), {"gpu": gpus("NVIDIA L40S")})  # "L4" also matches, "L40S" is longer
    assert l40s["usd_per_hour"] == DEFAULT_HARDWARE_USD_PER_HOUR["L40S"]


def test_resolve_mixed_gpus_adds_each_model():
    price = resolve(Prices(), {"gpu": gpus("Tesla T4", "NVIDIA L4", "Tesla T4")})
    expected = 2 * DEFAULT_HARDWARE_USD_PER_HOUR["T4"] + DEFAULT_HARDWARE_USD_PER_HOUR["L4"]
    assert price["usd_per_hour"] == pytest.approx(expected)
    assert price["device"] == "2 × Tesla T4 + 1 × NVIDIA L4"


def test_resolve_unknown_gpu_names_it_and_lists_keys():
    with pytest.raises(EffbenchError) as err:
        resolve(Prices(), {"gpu": gpus("AMD Instinct MI250X")})
    message = str(err.value)
    assert "'AMD Instinct MI250X'" in message
    assert all(key in message for key in DEFAULT_HARDWARE_USD_PER_HOUR)
    assert 'prices.hardware_usd_per_hour["AMD Instinct MI250X"]' in message


def test_resolve_cpu_without_core_count_asks_for_a_machine_price():
    with pytest.raises(EffbenchError, match=r'hardware_usd_per_hour\["Mystery CPU"\]'):
        resolve(Prices(), {"cpu": {"model": "Mystery CPU", "logical_cores": None, "usable_cores": None}})


def test_cost_arithmetic():
    price = {"usd_per_hour": 0.096, "usd_per_kwh": 0.13}
    result = cost(price, seconds=1800, kwh=0.5)
    assert result["hardware_usd"] == pytest.approx(0.048)
    assert result["energy_usd"] == pytest.approx(0.065)
    assert result["total_usd"] == pytest.approx(0.113)


def test_cost_without_energy_measurement():
    result = cost({"usd_per_hour": 3.0, "usd_per_kwh": 0.13}, seconds=60, kwh=None)
    assert result == {"hardware_usd": pytest.approx(0.05), "energy_usd": None, "total_usd": pytest.approx(0.05)}
