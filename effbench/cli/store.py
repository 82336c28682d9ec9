"""The ``effbench store`` commands, and the warnings every command reading a results store prints for its bad files."""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape

from effbench.cli.console import console, err_console
from effbench.errors import EffbenchError
from effbench.store.load import Results, is_dataset, load
from effbench.store.lock import StoreLock
from effbench.store.results import QUARANTINE, ResultsStore
from effbench.store.validate import Problem


def _quarantine_hint(root: Path) -> str:
    """How to move a store's bad files aside (escaped for the terminal)."""
    return escape(
        f"`effbench store check --results {root} --quarantine` moves bad files to {root / QUARANTINE}/ "
        "and removes leftover temporary files"
    )


def warn_problems(root: Path, problems: list[Problem]) -> None:
    """One line on stderr per bad file left out, so results read from a damaged store never hide what they miss."""
    for problem in problems:
        err_console.print(
            f"[yellow]warning:[/yellow] skipped {escape(str(root / problem.path))}: {escape(problem.reason)}",
            soft_wrap=True,
        )
    if problems:
        err_console.print(f"  [dim]{_quarantine_hint(root)}[/dim]", soft_wrap=True)


Command = Callable[[argparse.Namespace], int]


def bulk_reader(command: Command) -> Command:
    """A command reading a whole store runs with Python's cycle collector paused: it makes millions of short-lived
    acyclic objects (records, cells), and each collection walks every live one (1.1 M records: 2.9 s with it, 0.8 s
    without); reference counting still frees them. Never a sweep: models and lm-eval hold cycles."""

    @functools.wraps(command)
    def paused(args: argparse.Namespace) -> int:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return command(args)
        finally:
            if enabled:
                gc.enable()

    return paused


def load_results(root: Path | str, layout: str = "any") -> Results:
    """``load`` for a command: a store's bad files are warned of, and the valid runs are used."""
    results = load(root, layout)
    warn_problems(Path(root), results.problems)
    return results


@bulk_reader
def cmd_store_check(args: argparse.Namespace) -> int:
    """List a results store's bad files and leftover temporary files; --quarantine moves them aside."""
    root: Path = args.results
    if not root.is_dir():
        raise EffbenchError(f"{root} does not exist or is not a folder")
    if is_dataset(root):
        raise EffbenchError(f"{root} is a dataset folder, not a results store: `effbench store check` checks stores")
    store = ResultsStore(root)
    with StoreLock(root) if args.quarantine else contextlib.nullcontext():  # no sweep rewrites a file being moved
        results, leftovers = load(root, "store"), store.leftovers()
        counts = f"{len(results.runs)} valid runs, {len(results.problems)} bad files, {len(leftovers)} leftover files"
        console.print(f"{escape(str(root))}: {counts}", soft_wrap=True)
        for problem in results.problems:
            console.print(f"  {escape(str(problem))}", soft_wrap=True)
        for path in leftovers:
            where = path.relative_to(root).as_posix()
            console.print(f"  {escape(where)}: temporary file of an interrupted write", soft_wrap=True)
        if not results.problems and not leftovers:
            return 0
        if not args.quarantine:
            console.print(_quarantine_hint(root), soft_wrap=True)
            return 1
        for path in store.quarantine(results.problems):  # quarantine/<time>/<table>/<file>
            moved, folder = path.relative_to(path.parents[1]).as_posix(), path.parents[1].relative_to(root).as_posix()
            console.print(f"moved {escape(moved)} to {escape(folder)}/", soft_wrap=True)
        for path in store.clean_leftovers():
            console.print(f"removed {escape(path.relative_to(root).as_posix())}", soft_wrap=True)
    return 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``store`` commands to the ``effbench`` parser."""
    st = sub.add_parser("store", help="Check a results store for damaged files, and move them aside.")
    st_sub = st.add_subparsers(dest="store_command", required=True)
    check = st_sub.add_parser("check", help=cmd_store_check.__doc__, description=cmd_store_check.__doc__)
    check.add_argument("--results", type=Path, default=Path("effbench-results"), help="results store")
    check.add_argument(
        "--quarantine",
        action="store_true",
        help="move bad files to RESULTS/quarantine/<time>/ (never deleted) and remove leftover temporary files",
    )
    check.set_defaults(func=cmd_store_check)
