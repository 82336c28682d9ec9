"""Probe: describes the machine a run happened on."""

from __future__ import annotations

from typing import Any, ClassVar


class Probe:
    """Describes the machine a run happened on; ``collect`` returns JSON-serialisable data.

    ``fingerprint_keys`` name the fields that identify the hardware (not the moment), so
    results from different machines are never mixed silently.
    """

    name: ClassVar[str]
    fingerprint_keys: ClassVar[tuple[str, ...]] = ()

    def collect(self) -> dict[str, Any]:
        """Return what this probe knows about the machine."""
        raise NotImplementedError


def check_probe(obj: Probe) -> None:
    """Reject a malformed probe at registration, naming what is wrong."""
    if not isinstance(obj, Probe) or not getattr(obj, "name", ""):
        raise TypeError(f"{obj!r} is not an effbench.Probe with a name")
