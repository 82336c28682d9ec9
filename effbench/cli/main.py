"""The ``effbench`` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from effbench.api.executor import Outcome
from effbench.cli.console import SHOWN_TABLES, console, err_console, print_tables
from effbench.cli.store import bulk_reader
from effbench.config.suite import UNSTABLE_CV
from effbench.errors import EffbenchError
from effbench.version import __version__

if TYPE_CHECKING:
    from effbench.present.report import ComparisonTable, Tables


def _positive(text: str) -> float:
    """An argparse type for thresholds: a number above zero, else a usage error that says so."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def outcome_text(outcome: Outcome) -> str:
    """How a finished run is shown on the progress bar."""
    if outcome.error:
        return "failed"
    return "not applicable" if (outcome.result or {}).get("not_applicable") else "done"


def _option(text: str) -> tuple[str, Any]:
    """An argparse type for ``KEY=VALUE``: the value read as YAML (numbers, true, {mappings}), else a usage error."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"the value of {key.strip()} is not valid YAML: {value!r}") from None


def executor_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The executor's options given on the command line (``--address``, ``--executor-option``), None when none are."""
    options = dict(args.executor_option or [])
    if args.address is not None:
        options["address"] = args.address
    return options or None


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run a suite (the default one without arguments) and print the comparison table."""
    from effbench.cli.store import load_results
    from effbench.config.suite import load_suite
    from effbench.plugins import registry
    from effbench.present import report
    from effbench.publish.trackers import Exporter
    from effbench.run.sweep import run_suite

    overrides = {
        "models": None if args.model is None else [args.model],
        "techniques": args.technique,
        "tasks": args.task or None,
        "task_dirs": args.include_path,
        "output": args.output,
        "limit": args.limit,
        "timeout": args.timeout,
        "scenarios": args.scenario,
        "executor": args.executor,
        "executor_options": executor_options(args),
        "device": args.device,
        "dtype": args.dtype,
        "device_map": args.device_map,
        "attn_implementation": args.attn_implementation,
        "trackers": args.tracker,
    }
    suite = load_suite(args.suite, **overrides)
    report.check_writable(suite.output)  # before any run: a refusal after the sweep would waste it
    exporter = Exporter.for_suite(suite, registry())  # an unknown tracker or a bad parameter: before any run
    started = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[phase]}"),
        console=err_console,
        transient=not err_console.is_terminal,
    ) as progress:
        bar = progress.add_task("runs", total=len(suite.models) * len(suite.techniques), phase="planning")

        def on_start(run, index, total):
            progress.update(bar, description=escape(f"{run.model} · {run.label}"), phase="starting worker")

        def on_done(run, outcome):
            phase = "stored (already done)" if outcome is None else outcome_text(outcome)
            progress.update(bar, advance=1, phase=phase)

        result = run_suite(
            suite,
            force=args.force,
            on_start=on_start,
            on_event=lambda text: progress.update(bar, phase=escape(text)),
            on_done=on_done,
            on_stored=exporter,
        )
    paths = write_report(
        report.Tables(load_results(suite.output, "store"), result.run_ids, suite.unstable_cv, None), suite.output
    )
    summary = (
        f"{len(result.run_ids)} runs ({len(result.skipped)} already stored, {len(result.failed)} failed, "
        f"{len(result.not_applicable)} not applicable) "
        f"in {time.perf_counter() - started:.1f} s; results in {suite.output}, report in "
        f"{', '.join(str(p) for p in paths.values())}"
    )
    console.print(escape(summary))
    for run_id, reason in result.not_applicable.items():
        err_console.print(f"[yellow]run {run_id} not applicable:[/yellow] {escape(reason)}")
    for run_id, error in result.failed.items():
        log = suite.output / "logs" / f"{run_id}.log"
        err_console.print(f"[red]run {run_id} failed:[/red] {escape(f'{error} (log: {log})')}")
    for failure in exporter.failures:
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(failure))}")
    return 1 if result.failed else 0


@bulk_reader
def cmd_report(args: argparse.Namespace) -> int:
    """Re-render the comparison table from a results store."""
    from effbench.cli.store import load_results
    from effbench.plugins import registry
    from effbench.present import report
    from effbench.present.columns import registry_columns

    results = load_results(args.results)
    write_report(report.Tables(results, None, args.unstable_cv, registry_columns(registry())), args.results)
    return 0


def write_report(tables: Tables | list[ComparisonTable], folder: Path) -> dict[str, Path]:
    """Write the report files into ``folder``, each table as it is built, showing the first ones on the terminal
    meanwhile."""
    from effbench.present import report

    full = str(folder / "report.md")
    return report.write(tables, folder, lambda first, total: print_tables(first, full, total), SHOWN_TABLES)


def cmd_plugins(args: argparse.Namespace) -> int:
    """List every plugin object with its kind, stage, resources and origin, then load errors."""
    from effbench.plugins import registry

    reg = registry()
    rows = []
    kinds = (
        ("technique", reg.techniques),
        ("metric", reg.metrics),
        ("probe", reg.probes),
        ("executor", reg.executors),
        ("tracker", reg.trackers),
    )
    for kind, table in kinds:
        for name, obj in table.items():
            origin = reg.origins[(kind, name)]
            rows.append(
                {
                    "kind": kind,
                    "name": name,
                    "stage": getattr(obj, "stage", ""),
                    "resources": list(getattr(obj, "resources", ())) or [getattr(obj, "resource", "")],
                    "plugin": origin.plugin,
                    "distribution": origin.distribution,
                    "version": origin.version,
                }
            )
    errors = [{"plugin": e.origin.plugin, "distribution": e.origin.distribution, "error": e.error} for e in reg.errors]
    if args.json:
        console.print_json(
            json.dumps({"plugins": rows, "errors": errors, "task_dirs": [str(d) for d in reg.task_dirs]})
        )
        return 0
    view = Table(title="effbench plugins")
    for column in ("kind", "name", "stage", "resources", "plugin", "distribution", "version"):
        view.add_column(column)
    for row in rows:
        cells = (row["kind"], row["name"], row["stage"], ", ".join(row["resources"]), row["plugin"])
        view.add_row(*(escape(c) for c in (*cells, row["distribution"], row["version"])))
    console.print(view)
    for error in errors:
        where = escape(f"{error['plugin']} ({error['distribution']})")
        err_console.print(f"[red]error loading plugin {where}:[/red] {escape(error['error'])}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Print the hardware record stored with every result, as JSON."""
    from effbench.plugins import registry
    from effbench.run.sweep import collect_probes, hardware_fingerprint

    reg = registry()
    probes = collect_probes(reg)
    print(json.dumps({"fingerprint": hardware_fingerprint(reg, probes), "probes": probes}, indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="effbench", description="What an LLM efficiency technique really costs and saves."
    )
    parser.add_argument("--version", action="version", version=f"effbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help=cmd_evaluate.__doc__, description=cmd_evaluate.__doc__)
    ev.add_argument("suite", nargs="?", type=Path, help="suite YAML (default: the built-in default suite)")
    ev.add_argument("--model", help="model id: zoo:NAME, a Hub id or a local directory")
    ev.add_argument(
        "--technique",
        action="append",
        metavar="NAME[:k=v,...][+NAME...]",
        help="technique to run (repeatable); a stack applies several in turn, e.g. prune-nm+dynamic-int8",
    )
    ev.add_argument("--task", action="append", help="lm-eval task or group (repeatable)")
    ev.add_argument(
        "--include-path",
        action="append",
        metavar="DIR",
        help="a folder of your own lm-eval task YAML files (repeatable), added to the suite's task_dirs; "
        "README, 'Your tasks': include lm-eval's task file and point it at local data",
    )
    ev.add_argument("--output", help="results directory (default ./effbench-results)")
    ev.add_argument("--limit", type=int, help="documents per task")
    ev.add_argument("--timeout", type=float, help="seconds per run before it is stopped")
    ev.add_argument(
        "--scenario",
        action="append",
        metavar="KIND[:k=v,...]",
        help="load scenario (repeatable): single-stream, fixed-batch, server:rate=R, offline; e.g. server:rate=2",
    )
    ev.add_argument("--force", action="store_true", help="rerun runs already in the results store")
    ev.add_argument(
        "--executor",
        help="where runs execute: forkserver (default: a fresh process per run), inline, ray (a Ray cluster), "
        "or a plugin's",
    )
    ev.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="the Ray cluster's head for --executor ray (what `ray start --head` prints; auto: the local one); "
        "without it, a Ray is started in this process",
    )
    ev.add_argument(
        "--executor-option",
        action="append",
        type=_option,
        metavar="KEY=VALUE",
        help="an option of the executor (repeatable), e.g. cpus_per_run=2 for ray; `effbench plugins` lists executors",
    )
    ev.add_argument("--device", help="auto (default: the first GPU, else cpu), cpu, cuda, cuda:N or mps")
    ev.add_argument(
        "--dtype",
        help="weights' dtype: auto (default: the checkpoint's on a GPU, float32 on cpu), float32, bfloat16 or float16",
    )
    ev.add_argument(
        "--device-map",
        "--device_map",
        help="spread a model too large for one device: auto, balanced, balanced_low_0 or sequential (accelerate)",
    )
    ev.add_argument(
        "--tracker",
        action="append",
        metavar="NAME[:k=v,...]",
        help="export each stored run to this tracker too (repeatable), e.g. mlflow:tracking_uri=sqlite:///mlflow.db",
    )
    ev.add_argument(
        "--attn-implementation",
        help="attention kernel at load: eager, sdpa, flash_attention_2, ... (default: transformers')",
    )
    ev.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser("report", help=cmd_report.__doc__, description=cmd_report.__doc__)
    rp.add_argument("--results", type=Path, default=Path("effbench-results"))
    rp.add_argument(
        "--unstable-cv",
        type=_positive,
        default=UNSTABLE_CV,
        help=f"flag figures whose repeats vary more than this coefficient of variation (default {UNSTABLE_CV})",
    )
    rp.set_defaults(func=cmd_report)

    pl = sub.add_parser("plugins", help=cmd_plugins.__doc__, description=cmd_plugins.__doc__)
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(func=cmd_plugins)
    from effbench.cli.plugin_authoring import add_commands as add_authoring_commands

    add_authoring_commands(pl)

    pr = sub.add_parser("probe", help=cmd_probe.__doc__, description=cmd_probe.__doc__)
    pr.set_defaults(func=cmd_probe)

    from effbench.cli.dataset import add_commands
    from effbench.cli.store import add_commands as add_store_commands

    add_commands(sub)
    add_store_commands(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the sweep is, so the worker is stopped and nothing half-done is stored (like Ctrl-C)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return args.func(args)
    except EffbenchError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}")
        return 2
    except KeyboardInterrupt as stop:
        what = "terminated" if isinstance(stop, Terminated) else "interrupted"
        err_console.print(
            f"[yellow]{what}: the run in progress was stopped and not stored; finished runs are stored; "
            "rerun the same command to resume[/yellow]"
        )
        return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
