"""The network hook point: code that moves a run's data between machines reports its bytes here.

Interface counters see every process of the network namespace; distributed techniques (gradient or
activation exchange, remote draft models) call ``record`` so their own traffic is attributed exactly.
A distributed run's training counts the tensors each rank hands to collectives (all-reduce, broadcast)
as ``collective`` bytes: what the ranks exchange, on a wire or through loopback.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_totals = {"sent": 0, "received": 0, "collective": 0}


def record(sent: int = 0, received: int = 0, collective: int = 0) -> None:
    """Count bytes this process sent to or received from other machines, or handed to collective operations."""
    if sent < 0 or received < 0 or collective < 0:
        raise ValueError(f"byte counts cannot be negative (sent={sent}, received={received}, collective={collective})")
    with _lock:
        _totals["sent"] += sent
        _totals["received"] += received
        _totals["collective"] += collective


def recorded() -> dict[str, int]:
    """Bytes recorded so far by this process (the metric takes differences, so nothing is ever reset)."""
    with _lock:
        return dict(_totals)


def interface_bytes() -> dict[str, int]:
    """Bytes through the namespace's network interfaces, loopback excluded (psutil / /proc/net/dev)."""
    import psutil

    counters = psutil.net_io_counters(pernic=True)
    nics = [c for name, c in counters.items() if name != "lo"]
    return {"sent": sum(c.bytes_sent for c in nics), "received": sum(c.bytes_recv for c in nics)}
