"""How busy other work kept the machine during a window: beside other jobs a run is slower for no fault of its own."""

from __future__ import annotations

import os
import time

import psutil

from effbench.api.context import RUN_ROOT_PID, RunContext
from effbench.api.metric import Metric, Quantity, Window
from effbench.hookspecs import hookimpl

TICK = 1 / os.sysconf("SC_CLK_TCK")  # seconds: what /proc/stat and the processes' CPU times count in
IDLE_FIELDS = ("idle", "iowait")  # CPU time no process used; every other field (steal included) was someone's


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy since boot, every core summed (steal counts: another tenant ran)."""
    times = psutil.cpu_times()
    return sum(value for name, value in times._asdict().items() if name not in IDLE_FIELDS)


def own_cpu_seconds() -> float:
    """CPU-seconds of the run's process, its ended children and its live descendants: the run's own work.

    In a rank of a distributed run the run's process is the worker that started the ranks, so the other
    ranks count as the run's own, not as other work.
    """
    me = psutil.Process(int(os.environ.get(RUN_ROOT_PID, os.getpid())))
    total = sum(me.cpu_times()[:4])  # user, system, children_user, children_system
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # ended since it was listed: its time is in children_* once reaped
            continue
    return total


class _ContentionWindow(Window):
    """Machine and own CPU time when the window opened; the others' share of the capacity at close."""

    def __init__(self, metric: BackgroundCpu) -> None:
        self.metric = metric
        self.began = time.perf_counter()
        self.machine, self.own = machine_busy_seconds(), own_cpu_seconds()

    def close(self, run: RunContext) -> float | None:
        seconds = time.perf_counter() - self.began
        if seconds <= 0:
            return None
        others = (machine_busy_seconds() - self.machine) - (own_cpu_seconds() - self.own)
        if others < TICK / 2:  # the counters count whole clock ticks: less than half of one is float rounding
            return 0.0
        return others / (seconds * (psutil.cpu_count() or 1)) * 100


class BackgroundCpu(Metric):
    """The share of the machine's CPU capacity other processes used while the run was measured."""

    name = "background_cpu"
    unit = "%"
    resource = "computation"
    higher_is_better = False
    phases = ("apply", "train")
    description = (
        "CPU time other processes used during the window, as a share of every core's time: machine-wide busy "
        "time (/proc/stat, steal included) minus the run's own process tree; above 10 % the report flags the run."
    )
    quantities = (Quantity(name, unit, resource, False, description, header="Background CPU (%)", digits=1,
                           detail=True),)  # fmt: skip

    def open(self, run: RunContext) -> Window:
        return _ContentionWindow(self)


@hookimpl
def register_metrics(register):
    register(BackgroundCpu())
