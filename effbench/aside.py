"""Work done beside: a large output's independent part made by a forked process on the machine's other core.

A forked process shares the parent's objects as they are (a leaderboard's boards, a report's first tables: nothing
is pickled on the way there). It pays only for work that reads few objects, since the child copies each memory page
it touches: the leaderboard's plots and its CSVs, the report's terminal tables (while the rest of the report is built
and written). A process can also be forked before the work it is given exists (``Prepared``: the leaderboard's plots,
whose process imports matplotlib while the boards are made), which is then pickled to it, and a list's second half
can be worked on there (``in_halves``: a store's files read for the first time), its results pickled back. Only for
a large output, on Linux's fork; elsewhere the same work runs in the process, one part after the other. A failure
there is raised in the parent, with its message.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")
A = TypeVar("A")
LARGE = 2000  # rows (runs, points) from which an output's parts are made side by side
BESIDE_NICENESS = 10  # the forked process yields the CPU to its parent when both want it


def _pays(size: int) -> bool:
    return size > LARGE and sys.platform == "linux"  # fork: Linux's safe default


def side_by_side(beside: Callable[[], None], meanwhile: Callable[[], None], what: str, size: int) -> None:
    """``beside`` in a forked process while ``meanwhile`` runs here, for an output of ``size`` rows (one after the
    other where it does not pay); the forked one is always waited for, so it never writes into a folder being
    removed, and what it raised is raised, unless ``meanwhile`` raised first."""
    if not _pays(size):
        meanwhile()
        beside()
        return
    _together(_start(beside, what), meanwhile)


class Prepared(Generic[A]):
    """``work`` done beside, in a process forked now that readies itself (``prepare``: its imports) while this one
    goes on, then waits for what to work on: ``alongside`` gives it. Where it does not pay, nothing is forked and
    ``alongside`` does the work here. A context: leaving it, a process never given work is told so and waited for."""

    def __init__(self, prepare: Callable[[], None], work: Callable[[A], None], what: str, size: int) -> None:
        self.work = work
        self.wait: Callable[[], None] | None = None
        if not _pays(size):
            return
        receive, send = multiprocessing.Pipe(duplex=False)

        def child() -> None:
            send.close()  # this process's copy: the parent's is the only one, so its end is an end of file here
            prepare()
            try:
                given = receive.recv()
            except EOFError:
                return  # never given work
            work(given)

        self.wait, self.send = _start(child, what), send
        receive.close()

    def alongside(self, given: A, meanwhile: Callable[[], None]) -> None:
        """``work(given)`` in the prepared process while ``meanwhile`` runs here, as ``side_by_side`` does."""
        if self.wait is None:
            meanwhile()
            self.work(given)
            return
        try:
            self.send.send(given)
        except OSError:
            pass  # the process has ended (its preparing failed): waiting for it says why
        finally:
            self.send.close()
        _together(self.wait, meanwhile)

    def __enter__(self) -> Prepared[A]:
        return self

    def __exit__(self, *raised: object) -> None:
        if self.wait is not None and not self.send.closed:
            self.send.close()
            with contextlib.suppress(Exception):  # what this process raised is what is shown
                self.wait()


def in_halves(work: Callable[[Sequence[T]], U], items: Sequence[T], what: str) -> list[U]:
    """``work`` of each half of ``items``, in order: the second half's by a forked process on the other core while
    this one does the first, where there are many items and this process runs no other thread (a fork copies none,
    nor what they hold), else both here."""
    half = len(items) // 2
    if not _pays(len(items)) or threading.active_count() > 1:
        return [work(items[:half]), work(items[half:])]
    first: list[U] = []
    second = _together(_start(lambda: work(items[half:]), what), lambda: first.append(work(items[:half])))
    return [*first, second]


def _together(wait: Callable[[], T], meanwhile: Callable[[], None]) -> T:
    """``meanwhile``, then ``wait`` for the forked process in any case: what it returned, or what it raised unless
    ``meanwhile`` raised first."""
    try:
        meanwhile()
    except BaseException:
        with contextlib.suppress(Exception):
            wait()
        raise
    return wait()


def _start(work: Callable[[], T], what: str) -> Callable[[], T]:
    """Start ``work`` in a forked process; returns the wait for its result, which raises what ``work`` raised
    ("``what`` failed: …")."""
    receive, send = multiprocessing.Pipe(duplex=False)

    def child() -> None:
        with contextlib.suppress(OSError):
            os.nice(BESIDE_NICENESS)  # the work in the parent is what the command waits for: it goes first
        try:
            result: Any = work()
        except BaseException as err:  # everything reaches the parent, which raises it
            send.send((False, f"{type(err).__name__}: {err}"))
        else:
            send.send((True, result))

    process = multiprocessing.get_context("fork").Process(target=child, daemon=True)
    process.start()
    send.close()  # the child's end: the parent sees end of file if the child dies without a word

    def wait() -> T:
        try:
            done, result = receive.recv()
        except EOFError:
            done, result = False, "the process doing it ended without finishing"
        finally:
            process.join()
            receive.close()
        if not done:
            raise RuntimeError(f"{what} failed: {result}")
        return result

    return wait
