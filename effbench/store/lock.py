"""One writer per results store: an OS file lock, released by the kernel however the holder ends (even kill -9)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType

from effbench.errors import EffbenchError

LOCK_NAME = ".effbench.lock"


class StoreLock:
    """Held while a sweep writes a store; a second sweep on the same store is refused, naming the holder."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_NAME
        self.handle: int | None = None

    def __enter__(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            os.close(handle)
            raise EffbenchError(
                f"another effbench sweep{holder} is writing {self.path.parent}: wait for it to finish, "
                "or choose another --output"
            ) from None
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps({"pid": os.getpid(), "since": time.strftime("%H:%M:%S")}).encode())
        self.handle = handle
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            os.close(self.handle)
            self.handle = None


def _holder(handle: int) -> str:
    """`` (pid N, since HH:MM:SS)`` from the lock file, or nothing when it cannot be read."""
    try:
        info = json.loads(os.pread(handle, 200, 0) or b"{}")
        return f" (pid {int(info['pid'])}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
