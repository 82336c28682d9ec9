"""A damaged results store: every command uses its valid runs and names each bad file once; `store check` lists
and quarantines them; a resume reruns damaged runs; leftovers of interrupted writes are cleaned by name only."""

import csv
import fcntl
import os
import shutil
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from effbench.errors import EffbenchError
from effbench.publish import hub
from effbench.store.load import load
from effbench.store.results import STORE_MANIFEST, ResultsStore
from effbench.store.validate import Problem
from tests.conftest import cli
from tests.store_helpers import (
    as_written_by,
    measurements,
    model_not_utf8,
    rewrite,
    run_row,
    synthetic_store,
    values_as_text,
)
from tests.test_hub import REPO, TOKEN, hub_server  # noqa: F401 - the local Hub fixture

BAD = {  # file -> the start of its reason
    "runs/[bold]export.parquet": "not an effbench runs table (its columns: color, size)",  # shown as itself
    "runs/hwA-1.parquet": "truncated Parquet file",
    "measurements/hwA-2.parquet": "empty file",
}
VALID = {"hwA-0": "baseline", "hwA-3": "prune-magnitude(sparsity=0.9)", "hwA-4": "prune-magnitude(sparsity=0.7)"}
HOUR_AGO = time.time() - 3600


@pytest.fixture
def damaged(tmp_path) -> Path:
    """The four synthetic runs and one without measurements, then a truncated, an empty and a foreign file."""
    root = tmp_path / "store"
    store = synthetic_store(root)
    store.write_run(run_row("hwA-4", "prune-magnitude", {"sparsity": 0.7}), [])
    (root / "measurements" / "hwA-4.parquet").unlink()
    truncated = root / "runs" / "hwA-1.parquet"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / "measurements" / "hwA-2.parquet").write_bytes(b"")
    pq.write_table(pa.table({"color": ["red"], "size": [3]}), root / "runs" / "[bold]export.parquet")
    return root


def _temp_file(folder: Path, name: str = "hwA-0.parquet", age: float = HOUR_AGO) -> Path:
    """A temporary file as the atomic writer names it, left behind ``age`` ago."""
    path = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    path.write_bytes(b"PAR1 half-written")
    os.utime(path, (age, age))
    return path


def _named_once(output: str) -> None:
    """Each bad file named exactly once, on a line with its reason: one warning per file, none repeated or lost."""
    for name, reason in BAD.items():
        assert output.count(name) == 1, output
        assert reason in next(line for line in output.splitlines() if name in line)


def test_a_column_given_twice_is_named_and_its_run_skipped(tmp_path):
    root = synthetic_store(tmp_path / "store").root
    path = root / "measurements" / "hwA-1.parquet"
    table = pq.read_table(path)
    pq.write_table(table.append_column(pa.field("value", pa.float64()), table.column("value")), path)
    results = load(root)
    assert [str(p) for p in results.problems] == ["measurements/hwA-1.parquet: column 'value' given more than once"]
    assert "hwA-1" not in {run.run_id for run in results.runs} and len(results.runs) == 3


def test_load_returns_the_valid_runs_and_one_problem_per_bad_file(damaged):
    results = load(damaged)
    assert sorted(run.run_id for run in results.runs) == sorted(VALID)
    assert {m.run_id for m in results.measurements} == {"hwA-0", "hwA-3"} and not results.measurements_of("hwA-4")
    assert len(results.problems) == len(BAD)
    for problem in results.problems:
        assert problem.reason.startswith(BAD[problem.path])


def _corrupt_footer(path: Path) -> None:
    """Keep the Parquet magic and footer length, zero the rest: readable-looking, yet not a table."""
    data = path.read_bytes()
    path.write_bytes(data[:4] + b"\0" * (len(data) - 12) + data[-8:-4] + data[-4:])


@pytest.mark.parametrize(
    ("damage", "path", "reason"),
    [
        (lambda r: (r / "runs/hwA-0.parquet").write_text("run_id,model\n"), "runs/hwA-0.parquet", "not a Parquet file"),
        (lambda r: _corrupt_footer(r / "runs/hwA-0.parquet"), "runs/hwA-0.parquet", "corrupt Parquet file ("),
        (lambda r: shutil.copy(r / "runs/hwA-0.parquet", r / "runs/copy.parquet"), "runs/copy.parquet",
         "holds rows of run hwA-0, expected run copy"),
        (lambda r: shutil.copy(r / "measurements/hwA-0.parquet", r / "measurements/hwA-3.parquet"),
         "measurements/hwA-3.parquet", "holds rows of run hwA-0, expected run hwA-3"),
        (lambda r: rewrite(r / "runs/hwA-0.parquet", lambda t: t.drop_columns(["model", "stage"])),
         "runs/hwA-0.parquet", "missing columns 'model', 'stage'"),
        (lambda r: rewrite(r / "measurements/hwA-3.parquet", values_as_text), "measurements/hwA-3.parquet",
         "column 'value' has type string, expected double"),
        (lambda r: rewrite(r / "runs/hwA-0.parquet", model_not_utf8), "runs/hwA-0.parquet",
         "column 'model' holds text that is not UTF-8"),
        (lambda r: (r / "runs/folder.parquet").mkdir(), "runs/folder.parquet", "unreadable (Is a directory)"),
    ],
)  # fmt: skip
def test_each_damage_is_one_line_naming_the_file_once_and_the_reason(tmp_path, damage, path, reason):
    store = synthetic_store(tmp_path)
    damage(tmp_path)
    problems = load(tmp_path).problems
    assert len(problems) == 1 and problems[0].path == path and problems[0].reason.startswith(reason), problems
    assert str(problems[0]).count(Path(path).name) == 1 and "\n" not in str(problems[0])
    assert Path(path).stem not in store.statuses() and len(store.statuses()) == len(load(tmp_path).runs)


def test_statuses_skip_damaged_runs_and_rewriting_a_run_repairs_it(damaged):
    store = ResultsStore(damaged)
    assert store.statuses() == dict.fromkeys(VALID, "ok")
    store.write_run(run_row("hwA-1", "dtype", {"dtype": "bf16"}), measurements(0.9, 5, 60, 0.001, 560, 2.4))
    assert store.statuses() == dict.fromkeys(sorted([*VALID, "hwA-1"]), "ok")
    assert "runs/hwA-1.parquet" not in {p.path for p in load(damaged).problems}


@pytest.mark.parametrize("command", ["report", "leaderboard", "dataset build", "compare"])
def test_commands_use_the_valid_runs_and_name_each_bad_file_once(damaged, tmp_path, command):
    out = tmp_path / "out"
    args = {
        "report": [],
        "leaderboard": ["--out", str(out)],
        "dataset build": ["--out", str(out)],
        "compare": ["--against", str(synthetic_store(tmp_path / "theirs", "hwB").root), "--markdown", str(out)],
    }[command]
    result = cli(*command.split(), "--results", str(damaged), *args)
    assert result.returncode == 0, result.stderr
    _named_once(result.stdout + result.stderr)
    assert all(line.startswith(("warning: skipped", "  `effbench store check")) for line in result.stderr.splitlines())
    if command == "report":
        with open(damaged / "report.csv", newline="") as f:
            assert {row["Technique"] for row in csv.DictReader(f)} == set(VALID.values())
    elif command == "leaderboard":
        with open(out / "hwA" / "leaderboard.csv", newline="") as f:
            assert {row["run_id"] for row in csv.DictReader(f)} == set(VALID)
    elif command == "dataset build":
        assert {run.run_id for run in load(out, "dataset").runs} == set(VALID)
    else:
        titles = [line for line in out.read_text().splitlines() if line.startswith("### ")]
        assert titles == [f"### zoo:micro-m · {label}" for label in sorted(VALID.values())]


def test_publish_sends_the_valid_runs_only_and_names_the_skipped_files(hub_server, damaged, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = cli("publish", "--repo", REPO, "--results", str(damaged), "--endpoint", hub_server.url)
    assert result.returncode == 0, result.stderr
    assert "published to" in result.stdout and "3 runs added" in result.stdout
    _named_once(result.stdout + result.stderr)
    published = hub.fetch(REPO, tmp_path / "dl", endpoint=hub_server.url, token=TOKEN)
    assert {run.run_id for run in published.runs} == set(VALID)
    assert {m.run_id for m in published.measurements} == {"hwA-0", "hwA-3"}


def test_a_store_with_only_damaged_runs_is_one_line_naming_the_file_and_the_check(tmp_path):
    root = tmp_path / "store"
    ResultsStore(root).write_run(run_row("hwA-0", "baseline", {}), [])
    (root / "runs" / "hwA-0.parquet").write_bytes(b"")
    for command in (["report"], ["dataset", "build", "--out", str(tmp_path / "out")]):
        result = cli(*command, "--results", str(root))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "runs/hwA-0.parquet: empty file" in result.stderr and "effbench store check" in result.stderr
        assert not (tmp_path / "out").exists()


def test_store_check_lists_the_problems_and_quarantine_moves_them_aside(damaged):
    leftover = _temp_file(damaged / "measurements")
    before = {name: (damaged / name).read_bytes() for name in BAD}
    check = cli("store", "check", "--results", str(damaged))
    assert check.returncode == 1, check.stderr
    _named_once(check.stdout)
    assert f"measurements/{leftover.name}: temporary file of an interrupted write" in check.stdout
    assert "3 valid runs, 3 bad files, 1 leftover files" in check.stdout
    assert {name: (damaged / name).read_bytes() for name in BAD} == before  # a check changes nothing

    moved = cli("store", "check", "--results", str(damaged), "--quarantine")
    assert moved.returncode == 1, moved.stderr
    [folder] = (damaged / "quarantine").iterdir()
    kept = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert {name: kept[name] for name in BAD} == before  # moved, never deleted
    assert set(kept) == {*BAD, "runs/hwA-2.parquet"}  # the empty measurements' run goes too: it is rerun, not kept
    assert f"moved runs/hwA-1.parquet to quarantine/{folder.name}/" in moved.stdout
    assert not leftover.exists() and f"removed measurements/{leftover.name}" in moved.stdout

    again = cli("store", "check", "--results", str(damaged))
    assert again.returncode == 0 and "3 valid runs, 0 bad files, 0 leftover files" in again.stdout, again.stdout
    assert ResultsStore(damaged).statuses() == dict.fromkeys(VALID, "ok")


def test_quarantine_moves_nothing_outside_the_tables(tmp_path):
    store = synthetic_store(tmp_path / "store")
    (store.root / "notes.parquet").write_bytes(b"mine")
    outside = [Problem(p, "bad") for p in ("notes.parquet", "../store/runs/hwA-0.parquet", "runs", "logs/x.parquet")]
    assert store.quarantine(outside) == [] and not (store.root / "quarantine").exists()
    assert (store.root / "notes.parquet").read_bytes() == b"mine" and len(store.statuses()) == 4


def test_leftovers_are_cleaned_by_their_exact_name_only_and_never_while_being_written(tmp_path):
    store = synthetic_store(tmp_path / "store")
    runs = store.root / "runs"
    stale = [_temp_file(runs), _temp_file(store.root / "measurements", "hwA-3.parquet")]
    kept = [
        _temp_file(runs, age=time.time()),  # just written: its writer may not have locked it yet
        runs / ".notes.tmp",
        runs / f".hwA-0.parquet.{uuid.uuid4().hex.upper()}.tmp",
        runs / f".hwA-0.parquet.{uuid.uuid4().hex[:31]}.tmp",
        runs / f".hwA-0.csv.{uuid.uuid4().hex}.tmp",
        store.root / f".hwA-0.parquet.{uuid.uuid4().hex}.tmp",  # not in a table's folder
    ]
    for path in kept[1:]:
        path.write_text("a user's file")
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    written = _temp_file(runs)  # a writer holds its lock
    link = runs / f".hwA-9.parquet.{uuid.uuid4().hex}.tmp"
    link.symlink_to(store.root / "notes.txt")
    (store.root / "notes.txt").write_text("keep")
    with open(written, "rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)
        assert sorted(store.clean_leftovers()) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in [*kept, written, link])
    assert (store.root / "notes.txt").read_text() == "keep" and len(store.statuses()) == 4


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    store = synthetic_store(tmp_path)
    before = (tmp_path / "runs" / "hwA-0.parquet").read_bytes()
    seen = []

    def interrupted(table, where, **kwargs):
        write(table, where, **kwargs)
        os.utime(where, (HOUR_AGO, HOUR_AGO))
        seen.append(store.leftovers())  # locked by its writer: not a leftover, however old
        raise KeyboardInterrupt

    write = pq.write_table
    monkeypatch.setattr(pq, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write_run(run_row("hwA-0", "baseline", {}), [])
    assert seen == [[]] and not list(tmp_path.rglob("*.tmp"))
    assert (tmp_path / "measurements" / "hwA-0.parquet").read_bytes()  # the previous measurements, whole
    assert (tmp_path / "runs" / "hwA-0.parquet").read_bytes() == before and len(load(tmp_path).runs) == 4


def test_datasets_stay_strict(tmp_path):
    store = synthetic_store(tmp_path / "store")
    hub.build(store.root, tmp_path / "dataset")
    (tmp_path / "dataset" / "runs" / "hw-hwA.parquet").write_bytes(b"")
    with pytest.raises(EffbenchError, match=r"is invalid; nothing was changed:\n  runs/hw-hwA.parquet: empty file"):
        load(tmp_path / "dataset")
    assert cli("store", "check", "--results", str(tmp_path / "dataset")).returncode == 2


def test_a_store_says_it_is_one_and_only_a_store_has_files_moved_or_removed(tmp_path):
    """Quarantine and leftover cleaning act in a folder effbench made a store, never in another one."""
    store = synthetic_store(tmp_path / "store")
    assert (tmp_path / "store" / STORE_MANIFEST).is_file() and store.is_store()

    user = tmp_path / "user"  # a folder of the user's that happens to have a runs/ folder
    (user / "runs").mkdir(parents=True)
    (user / "runs" / "x.parquet").write_bytes(b"not parquet")
    (user / "notes.txt").write_text("mine")
    stale = user / "runs" / f".x.parquet.{uuid.uuid4().hex}.tmp"
    stale.write_bytes(b"")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    foreign = ResultsStore(user)
    assert not foreign.is_store() and foreign.leftovers() == [] and foreign.clean_leftovers() == []
    with pytest.raises(EffbenchError, match=r"is not an effbench results store .* nothing was moved"):
        foreign.quarantine([Problem("runs/x.parquet", "not a Parquet file")])
    assert (user / "runs" / "x.parquet").is_file() and stale.is_file()

    earlier = tmp_path / "earlier"  # a store written before manifests: recognised by its exact layout, adopted
    as_written_by(synthetic_store(earlier), "1.3")  # manifests came before samples
    (earlier / STORE_MANIFEST).unlink()
    (earlier / "runs" / "hwA-0.parquet").write_bytes(b"")
    moved = ResultsStore(earlier).quarantine([Problem("runs/hwA-0.parquet", "empty file")])
    assert moved and (earlier / STORE_MANIFEST).is_file()
