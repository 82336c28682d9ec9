"""A stand-in for pynvml (this machine has no NVIDIA driver): the calls effbench's GPU probe and energy source make."""

from __future__ import annotations

from types import SimpleNamespace

A100 = ("NVIDIA A100-SXM4-80GB", 80 * 2**30)


class FakeNvml:
    """GPUs with a name, memory and an energy counter in mJ (None: not supported); any call can be made to fail.

    ``open`` counts init minus shutdown, so tests can check that every init is paired with a shutdown.
    """

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # pynvml's name for it
        def __str__(self) -> str:
            return "Not Supported"

    def __init__(
        self, counters_mj: list[int | None] | None = None, fail_on: str = "", init_error: Exception | None = None
    ) -> None:
        self.counters_mj = [None, None] if counters_mj is None else counters_mj
        self.gpus = [A100, (A100[0], A100[1] - 2**20)][: len(self.counters_mj)]
        self.fail_on = fail_on
        self.init_error = init_error or (self.NVMLError("init failed") if fail_on == "init" else None)
        self.open = 0

    def _maybe_fail(self, call: str) -> None:
        if call == self.fail_on:
            raise self.NVMLError(f"{call} failed")

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._maybe_fail("count")
        return len(self.counters_mj)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return self.gpus[handle][0].encode()  # older nvidia-ml-py returns bytes

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=self.gpus[handle][1], free=0, used=0)

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._maybe_fail("cuda")
        return 12040

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if self.counters_mj[handle] is None:
            raise self.NVMLError_NotSupported()
        return self.counters_mj[handle]

    def tick(self, *added_mj: int) -> None:
        """Advance every GPU's energy counter."""
        self.counters_mj = [c + a for c, a in zip(self.counters_mj, added_mj, strict=True)]
