"""Calling a job's target (``module:function``) by name: shared by every executor."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def call_target(target: str, payload: dict[str, Any], emit: Callable[[str], None]) -> Any:
    """Import ``module:function`` and call it on the payload."""
    module_name, _, func_name = target.partition(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return func(payload, emit)
