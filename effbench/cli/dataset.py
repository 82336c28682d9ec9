"""The open-dataset commands: ``dataset build``, ``dataset pull``, ``publish``, ``compare`` and ``leaderboard``."""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from rich.markup import escape

from effbench.cli.store import bulk_reader
from effbench.errors import EffbenchError

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
ENDPOINT_HELP = "Hub URL (default: $HF_ENDPOINT, else https://huggingface.co)"


def is_repo_id(text: str) -> bool:
    """Whether ``text`` is a Hub dataset id ORG/NAME (not a path in disguise)."""
    return bool(REPO_ID.fullmatch(text)) and ".." not in text


def repo_id(text: str) -> str:
    """An ORG/NAME dataset id (checked before it names a folder or a URL)."""
    if not is_repo_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a dataset id of the form ORG/NAME")
    return text


@bulk_reader
def cmd_dataset_build(args: argparse.Namespace) -> int:
    """Build the dataset folder (runs, measurements, taxonomy, card) from a results store."""
    from effbench.cli.console import console
    from effbench.cli.store import warn_problems
    from effbench.publish import hub

    files = hub.build(args.results, args.out, warn=warn_problems)
    console.print(escape(f"dataset written to {args.out}: {', '.join(str(f.relative_to(args.out)) for f in files)}"))
    return 0


def cmd_dataset_pull(args: argparse.Namespace) -> int:
    """Download a published dataset, validate it whole and add its runs to a local results store."""
    from effbench.cli.console import console
    from effbench.publish import hub

    out = args.out or Path("effbench-pulled") / args.repo
    report = hub.pull(args.repo, out, revision=args.revision, endpoint=args.endpoint)
    console.print(
        escape(
            f"pulled {args.repo} into {out}: {len(report.added)} runs added, {len(report.updated)} updated, "
            f"{len(report.kept)} already there"
        )
    )
    return 0


@bulk_reader
def cmd_publish(args: argparse.Namespace) -> int:
    """Merge your results into a Hub dataset repo (created if needed), keyed by run id, in one commit."""
    from effbench.cli.console import console
    from effbench.cli.store import warn_problems
    from effbench.publish import hub

    result = hub.publish(
        args.results, args.repo, private=args.private, dry_run=args.dry_run, endpoint=args.endpoint, warn=warn_problems
    )
    report = result.report
    counts = f"{len(report.added)} runs added, {len(report.updated)} updated, {len(report.kept)} already there"
    if args.dry_run:
        create = f"create {'private ' if args.private else ''}dataset {args.repo} and " if result.created else ""
        console.print(f"dry run, nothing sent: would {create}commit to {args.repo} ({counts})")
        console.print(escape(f"  {result.message}\n{result.description}"))  # model and technique names
        console.print(escape(f"  files: {', '.join(result.files)}"))
    elif result.commit is None:
        console.print(f"{args.repo} is already up to date: nothing to publish ({counts})")
    else:
        console.print(escape(f"published to {args.repo} ({counts}): commit {result.commit}\n  {result.message}"))
    return 0


@bulk_reader
def cmd_compare(args: argparse.Namespace) -> int:
    """Your runs beside published runs of the same model, technique and task, same hardware first."""
    from effbench.cli.console import console, print_table
    from effbench.cli.store import load_results as load
    from effbench.plugins import registry
    from effbench.present import compare
    from effbench.present.columns import registry_columns
    from effbench.publish import hub

    mine = load(args.results)
    if Path(args.against).is_dir():
        published = load(args.against)
    elif is_repo_id(args.against):
        with tempfile.TemporaryDirectory(prefix="effbench-compare-") as tmp:
            published = hub.fetch(args.against, Path(tmp), revision=args.revision, endpoint=args.endpoint)
    else:
        raise EffbenchError(f"--against {args.against}: neither a folder nor a dataset id ORG/NAME")
    comparisons = compare.compare(mine, published, registry_columns(registry()))
    for c in comparisons:
        print_table(f"{c.title} ({c.scenario or 'no scenario'})", c.headers, c.rows)
    if args.markdown:
        args.markdown.write_text(compare.to_markdown(comparisons), encoding="utf-8")
        console.print(escape(f"written to {args.markdown}"))
    return 0


@bulk_reader
def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Leaderboards per machine (Markdown, CSV), Pareto plots of accuracy vs latency, energy and memory, and with
    --html one interactive page of every machine."""
    from effbench.cli.console import SHOWN_ROWS, console, print_table
    from effbench.cli.store import load_results as load
    from effbench.plugins import registry
    from effbench.present import html_page, leaderboard
    from effbench.present.columns import registry_columns

    if args.axis is not None and not args.html:
        raise EffbenchError("--axis chooses the first x-axis of the page: give --html too")
    axis = args.axis or html_page.AXIS
    html_page.check_axis(axis)  # before any work
    leaderboard.check_writable(args.out)
    results = load(args.results)
    with leaderboard.plotter(len(results.runs)) as drawing:  # matplotlib imported beside the boards
        boards = leaderboard.boards(results, registry_columns(registry()))
        page = html_page.page(results, boards, args.results, axis) if args.html else None

        def show() -> None:  # while the plots are drawn
            for board in boards:
                rows = leaderboard.rows(board, SHOWN_ROWS)
                title = f"{board.machine} ({board.fingerprint}; {board.scenario or 'no scenario'})"
                full = str(args.out / board.fingerprint / "leaderboard.md")
                print_table(title, leaderboard.headers(board), rows, full=full, total=len(board.entries))

        files = leaderboard.write(results, boards, args.out, page, show, drawing)
    console.print(escape(f"{len(files)} files written to {args.out}"))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the dataset commands to the ``effbench`` parser."""
    results_help = "results store (or dataset folder)"
    ds = sub.add_parser("dataset", help="Build the open dataset from a results store, or pull a published one.")
    ds_sub = ds.add_subparsers(dest="dataset_command", required=True)

    build = ds_sub.add_parser("build", help=cmd_dataset_build.__doc__, description=cmd_dataset_build.__doc__)
    build.add_argument("--results", type=Path, default=Path("effbench-results"), help="results store")
    build.add_argument("--out", type=Path, required=True, help="folder to write: new, empty, or a dataset (replaced)")
    build.set_defaults(func=cmd_dataset_build)

    pull = ds_sub.add_parser("pull", help=cmd_dataset_pull.__doc__, description=cmd_dataset_pull.__doc__)
    pull.add_argument("repo", type=repo_id, help="dataset id ORG/NAME")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--out", type=Path, help="results store to add to (default: effbench-pulled/ORG/NAME)")
    pull.add_argument("--endpoint", help=ENDPOINT_HELP)
    pull.set_defaults(func=cmd_dataset_pull)

    pub = sub.add_parser("publish", help=cmd_publish.__doc__, description=cmd_publish.__doc__)
    pub.add_argument("--repo", type=repo_id, required=True, help="dataset id ORG/NAME")
    pub.add_argument("--results", type=Path, default=Path("effbench-results"), help="results store")
    pub.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    pub.add_argument("--dry-run", action="store_true", help="show what would be committed; write nothing")
    pub.add_argument("--endpoint", help=ENDPOINT_HELP)
    pub.set_defaults(func=cmd_publish)

    cmp = sub.add_parser("compare", help=cmd_compare.__doc__, description=cmd_compare.__doc__)
    cmp.add_argument("--against", required=True, help="published dataset ORG/NAME, or a local dataset/results folder")
    cmp.add_argument("--results", type=Path, default=Path("effbench-results"), help="your " + results_help)
    cmp.add_argument("--revision", help="revision of the published dataset (default: main)")
    cmp.add_argument("--markdown", type=Path, help="also write the comparison as Markdown to this file")
    cmp.add_argument("--endpoint", help=ENDPOINT_HELP)
    cmp.set_defaults(func=cmd_compare)

    lb = sub.add_parser("leaderboard", help=cmd_leaderboard.__doc__, description=cmd_leaderboard.__doc__)
    lb.add_argument("--results", type=Path, default=Path("effbench-results"), help=results_help)
    lb.add_argument(
        "--out", type=Path, default=Path("leaderboards"), help="folder to write: new, empty, or leaderboards (replaced)"
    )
    lb.add_argument("--html", action="store_true", help="also write leaderboard.html: every machine on one page")
    lb.add_argument(
        "--axis", help="the page's first x-axis: latency (default), ttft, tpot, energy, cost, memory or size"
    )
    lb.set_defaults(func=cmd_leaderboard)
