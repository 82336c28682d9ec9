"""Register plugins in-process for a test: no distribution to install, and the process-wide registry put back after.

``registered(MyPlugin)`` builds a fresh registry of the builtins plus the given plugin objects (modules, classes
or instances with ``@hookimpl`` functions) and makes ``effbench.plugins.registry()`` return it inside the block.
The ``effbench_registry`` pytest fixture does the same until the test ends; load it from your root conftest.py
with ``pytest_plugins = ["effbench.testing"]`` (or ``from effbench.testing import effbench_registry``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest

from effbench.plugins import Registry, build_registry, use_registry

__all__ = ["effbench_registry", "registered"]


@contextmanager
def registered(*plugins: object, load_entry_points: bool = False, **named: object) -> Iterator[Registry]:
    """A fresh registry with ``plugins`` (named after their ``__name__`` or class) and ``named``, as ``registry()``.

    Their origin is the plugin name with distribution ``in-process``. Installed entry points are left out unless
    ``load_entry_points``, so a test sees only the builtins and its own plugins.
    """
    extra = dict(named)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in extra:
            raise ValueError(f"two plugins are named {name!r}; pass them as keyword arguments with distinct names")
        extra[name] = plugin
    with use_registry(build_registry(extra, load_entry_points=load_entry_points)) as reg:
        yield reg


@pytest.fixture
def effbench_registry() -> Iterator[Callable[..., Registry]]:
    """``effbench_registry(*plugins, **named)``: like ``registered``, in place until the test ends."""
    with ExitStack() as stack:
        yield lambda *plugins, **kwargs: stack.enter_context(registered(*plugins, **kwargs))
