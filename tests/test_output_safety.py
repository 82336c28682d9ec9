"""No effbench output replaces a user's file: ownership by manifest, atomic swaps, and user text shown as itself."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest

from effbench.cli.console import print_table
from effbench.errors import EffbenchError
from effbench.present import compare, leaderboard, report
from effbench.present.report import md, md_code
from effbench.publish import hub
from effbench.store import ownership
from effbench.store.dataset import DATASET, write_dataset
from effbench.store.load import Results, load
from effbench.store.results import ResultsStore
from tests.conftest import cli
from tests.store_helpers import COLUMNS, measurement, run_row, synthetic_store, two_machine_store

LEADERBOARD_START = "# effbench leaderboards\n\nRendered by `effbench leaderboard` (effbench 0.0.1) from 2 runs"
COMMANDS = {
    "dataset build": ("dataset", "build", "--results", "{store}", "--out", "{out}"),
    "leaderboard": ("leaderboard", "--results", "{store}", "--out", "{out}"),
}


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` (symlinks not followed): its bytes, its link target, or 'folder'."""
    seen: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                seen[rel] = ("link", os.readlink(path))
            else:
                seen[rel] = "folder" if path.is_dir() else path.read_bytes()
    return seen


def user_folder(root: Path, *, home: bool = False) -> Path:
    """A folder of a user's own files, named like effbench's (taxonomy/, a README.md that reads like a leaderboard)."""
    (root / "data").mkdir(parents=True)
    (root / "taxonomy").mkdir()
    (root / "thesis.tex").write_text(r"\section{Results}")
    (root / "data" / "x.csv").write_text("a,b\n1,2\n")
    (root / "taxonomy" / "notes.md").write_text("my notes")
    (root / "README.md").write_text(LEADERBOARD_START + "\nmine")
    if home:
        (root / ".bashrc").write_text("export A=1")
        (root / "Documents").mkdir()
        (root / "Documents" / "letter.txt").write_text("dear")
    return root


def run(command: str, store: Path, out: Path | str):
    return cli(*(arg.format(store=store, out=out) for arg in COMMANDS[command]))


def assert_refused(result, *words: str) -> None:
    """A refusal: exit status 2 and one line on stderr naming what is wrong, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def store(tmp_path) -> Path:
    return synthetic_store(tmp_path / "store").root


@pytest.fixture
def no_writes(monkeypatch):
    """Fail on any attempt to create, replace or delete: for targets that must be refused before anything is written."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"effbench tried to write before refusing: {args}")

    for owner, name in ((os, "replace"), (os, "rename"), (os, "mkdir"), (os, "unlink"), (os, "rmdir")):
        monkeypatch.setattr(owner, name, refuse)
    monkeypatch.setattr(shutil, "rmtree", refuse)
    monkeypatch.setattr(Path, "write_text", refuse)
    monkeypatch.setattr(Path, "write_bytes", refuse)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("home", [False, True], ids=["user-folder", "home-like"])
def test_a_user_folder_is_refused_and_left_exactly_as_it_was(command, home, store, tmp_path):
    out = user_folder(tmp_path / "mine", home=home)
    before, around = snapshot(out), sorted(p.name for p in tmp_path.iterdir())
    assert_refused(run(command, store, out), str(out), "choose an empty or new folder")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == around  # no temporary folder left beside it


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_holding_only_a_taxonomy_folder_or_a_readme_titled_like_a_leaderboard_is_refused(
    command, store, tmp_path
):
    taxonomy = tmp_path / "t"
    (taxonomy / "taxonomy").mkdir(parents=True)
    (taxonomy / "taxonomy" / "notes.md").write_text("mine")
    readme = tmp_path / "r"
    readme.mkdir()
    (readme / "README.md").write_text("# effbench leaderboards\n\nMy notes on them")  # its title, not its text
    for out in (taxonomy, readme):
        before = snapshot(out)
        assert_refused(run(command, store, out), "holds no effbench")
        assert snapshot(out) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_dot_works_when_empty_twice_and_is_refused_when_not(command, store, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    first = run(command, store, ".")
    assert first.returncode == 0, first.stderr
    assert Path.cwd() == here and (here / "README.md").is_file()  # the working folder itself stays
    again = run(command, store, ".")
    assert again.returncode == 0, again.stderr
    listed = json.loads((here / ownership.MANIFEST).read_text())["files"]
    assert sorted(snapshot(here)) == sorted({ownership.MANIFEST, *listed, *ownership._ancestors(listed)})
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing left beside it

    mine = user_folder(tmp_path / "mine")
    monkeypatch.chdir(mine)
    before = snapshot(mine)
    assert_refused(run(command, store, "."), str(mine))
    assert snapshot(mine) == before


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("filled", [True, False], ids=["to-a-user-folder", "to-an-empty-folder"])
def test_a_symlink_as_out_is_refused_and_neither_link_nor_target_changes(command, filled, store, tmp_path):
    target = user_folder(tmp_path / "mine") if filled else tmp_path / "empty"
    target.mkdir(exist_ok=True)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    before = snapshot(target)
    assert_refused(run(command, store, link), "symbolic link", str(target))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert snapshot(target) == before


def test_the_filesystem_root_is_refused_before_anything_is_written(store, no_writes):
    results = load(store)
    with pytest.raises(EffbenchError, match="root of the filesystem"):
        write_dataset(results, Path("/"), "card")
    with pytest.raises(EffbenchError, match="root of the filesystem"):
        leaderboard.write(results, [], Path("/"))
    with pytest.raises(EffbenchError, match="is not empty"):  # whatever says no first, nothing is written
        ownership.check_folder(Path("/"), DATASET)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_effbench_folder_is_replaced_with_what_the_new_output_holds(command, tmp_path):
    two, one = two_machine_store(tmp_path / "two").root, synthetic_store(tmp_path / "one").root
    out = tmp_path / "out"
    assert run(command, two, out).returncode == 0
    assert any("hwB" in rel for rel in snapshot(out))
    result = run(command, one, out)
    assert result.returncode == 0, result.stderr
    written = snapshot(out)
    assert not any("hwB" in rel for rel in written)  # the last output's own files went with it
    manifest = json.loads((out / ownership.MANIFEST).read_text())
    assert set(manifest["files"]) == {rel for rel, v in written.items() if v != "folder"} - {ownership.MANIFEST}
    assert manifest["kind"] in ("dataset", "leaderboards") and manifest["effbench_version"]


def test_a_file_effbench_did_not_write_stops_a_rewrite(store, tmp_path):
    out = tmp_path / "lb"
    assert run("leaderboard", store, out).returncode == 0
    (out / "hwA" / "my-notes.md").write_text("mine")
    before = snapshot(out)
    assert_refused(run("leaderboard", store, out), "hwA/my-notes.md, which effbench did not write")
    assert snapshot(out) == before


def test_a_file_written_into_the_folder_during_a_rewrite_is_kept(store, tmp_path, monkeypatch):
    out = tmp_path / "dataset"
    assert run("dataset build", store, out).returncode == 0
    checked = ownership.check_folder

    def then_a_user_writes(target: Path, output: ownership.Output) -> set[str]:
        owned = checked(target, output)
        (target / "runs" / "late.txt").write_text("mine")  # after the check, before the swap
        return owned

    monkeypatch.setattr(ownership, "check_folder", then_a_user_writes)
    assert run("dataset build", store, out).returncode == 0
    (late,) = tmp_path.rglob("late.txt")  # left in the folder moved aside: only listed files are deleted
    assert late.read_text() == "mine"


def test_an_earlier_versions_folder_is_adopted_only_in_its_exact_layout(store, tmp_path):
    for command in COMMANDS:
        out = tmp_path / command.replace(" ", "-")
        assert run(command, store, out).returncode == 0
        (out / ownership.MANIFEST).unlink()  # as an earlier effbench left it
        assert run(command, store, out).returncode == 0, command
        assert (out / ownership.MANIFEST).is_file()
        (out / ownership.MANIFEST).unlink()
        (out / "notes.txt").write_text("mine")  # no longer exactly effbench's
        before = snapshot(out)
        assert_refused(run(command, store, out), "holds no effbench")
        assert snapshot(out) == before
    committed = Path(__file__).parents[1] / "leaderboards" / "default-suite" / "leaderboard"  # the README's command
    assert "README.md" in ownership.check_folder(committed, leaderboard.LEADERBOARDS)  # may render it again


def test_a_manifest_of_another_kind_or_a_damaged_one_is_refused(store, tmp_path):
    dataset = tmp_path / "dataset"
    assert run("dataset build", store, dataset).returncode == 0
    before = snapshot(dataset)
    assert_refused(run("leaderboard", store, dataset), "holds an effbench dataset, not effbench leaderboards")
    assert snapshot(dataset) == before

    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    for damage in ("{not json", json.dumps({"kind": "dataset", "files": ["../victim.txt"]})):
        (dataset / ownership.MANIFEST).write_text(damage)
        before = snapshot(dataset)
        assert_refused(run("dataset build", store, dataset), "is damaged")
        assert snapshot(dataset) == before and victim.read_text() == "mine"


def test_symlinks_inside_an_effbench_folder_are_never_followed(store, tmp_path):
    out = tmp_path / "dataset"
    assert run("dataset build", store, out).returncode == 0
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)

    (out / "README.md").unlink()
    (out / "README.md").symlink_to(mine / "thesis.tex")  # a listed name, now a link to a user's file
    assert run("dataset build", store, out).returncode == 0
    assert not (out / "README.md").is_symlink() and snapshot(mine) == before  # the link went, not its target

    shutil.rmtree(out / "runs")
    (mine / "hw-hwA.parquet").write_bytes(b"a user's file named like a shard")
    (out / "runs").symlink_to(mine, target_is_directory=True)  # a listed folder, now a link out of the folder
    before = snapshot(mine)
    assert_refused(run("dataset build", store, out), "runs, which effbench did not write")
    assert snapshot(mine) == before


def test_report_overwrites_only_its_own_files_atomically(store, tmp_path):
    (store / "thesis.tex").write_text("mine")
    (store / "report.md").write_text("my own report")
    before = snapshot(store)
    assert_refused(cli("report", "--results", str(store)), "report.md exists and effbench did not write it")
    assert snapshot(store) == before

    (store / "report.md").unlink()
    assert cli("report", "--results", str(store)).returncode == 0
    names = {"report.md", "report.tex", "report.csv", "report-measurements.csv"}
    assert set(json.loads((store / report.REPORT.manifest).read_text())["files"]) == names
    (store / "report.md").unlink()
    (store / "report.md").symlink_to(store / "thesis.tex")  # a listed name, now a link to a user's file
    assert cli("report", "--results", str(store)).returncode == 0  # rewritten: the link is replaced, not followed
    assert (store / "thesis.tex").read_text() == "mine" and not (store / "report.md").is_symlink()
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")]

    (store / report.REPORT.manifest).unlink()  # an earlier version's four files, without a manifest: adopted
    assert cli("report", "--results", str(store)).returncode == 0
    (store / report.REPORT.manifest).unlink()
    (store / "report.tex").write_text("my own LaTeX")  # no longer the earlier version's exact set
    assert_refused(cli("report", "--results", str(store)), "report.md exists")
    assert (store / "report.tex").read_text() == "my own LaTeX"


MODEL = "m[/x]|`<i>$\\frac$"  # rich markup, Markdown table/code/HTML, matplotlib mathtext (invalid)
PARAMS = {"note": "[bold]loud"}
TASK = "t[/x]_%&{~^}"
METRIC = "lat`|ency"
MACHINE = "C[/x]PU <b>"


def unescaped(html: str, markdown: str) -> bool:
    """Whether Markdown holds an HTML tag that a renderer would treat as HTML (not preceded by a backslash)."""
    return re.search(rf"(?<!\\){re.escape(html)}", markdown) is not None


@pytest.fixture
def markup(tmp_path) -> Path:
    """A store whose names are markup of every kind the outputs render."""
    store = ResultsStore(tmp_path / "markup")
    hardware = json.dumps({"cpu": {"model": MACHINE, "logical_cores": 2}})
    for run_id, technique, params, acc in (("a", "baseline", {}, 0.9), ("b", "dtype", PARAMS, 0.8)):
        rows = [
            measurement("acc", acc, "", "quality", TASK),
            measurement("latency", 100.0 * acc, "ms", "computation", scenario="single-stream"),
            measurement(METRIC, 1.0, "ms", "computation"),
        ]
        store.write_run(dataclasses.replace(run_row(run_id, technique, params, model=MODEL), hardware=hardware), rows)
    return store.root


def test_markup_in_names_prints_literally_in_the_terminal(markup, tmp_path):
    for result in (cli("report", "--results", str(markup)), run("leaderboard", markup, tmp_path / "lb")):
        assert result.returncode == 0, result.stderr
        assert all(text in result.stdout for text in ("m[/x]", "[bold]loud", "t[/x]")), result.stdout
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_table("title [/x]", ["[bold]h", "Status"], [["c[/x]", "failed: [red]x :thumbs_up:"]])
    assert all(t in out.getvalue() for t in ("title [/x]", "[bold]h", "c[/x]", "[red]x :thumbs_up:"))

    broken = user_folder(tmp_path / "m[/x]")
    assert_refused(run("dataset build", markup, broken), "m[/x]")  # an error naming such a path prints too


def test_markdown_escapes_code_tables_links_and_html():
    assert md("a|b `c` <script>x</script> [l](u) *e*\nz") == r"a\|b \`c\` \<script>x\</script> \[l\](u) \*e\* z"
    assert md_code("a`b") == "``a`b``" and md_code("`x") == "`` `x ``" and md_code("plain") == "`plain`"


def test_latex_escapes_every_special_character():
    assert report._tex("\\ & % $ # _ { } ~ ^ < > |\nnext") == (
        r"\textbackslash{} \& \% \$ \# \_ \{ \} \textasciitilde{} \textasciicircum{} "
        r"\textless{} \textgreater{} \textbar{} next"
    )
    assert report._tex(">= 99% ±") == r"$\geq$ 99\% $\pm$"


def test_the_quick_escapes_are_the_one_pass_ones():
    """Markdown escapes by translation, LaTeX translates text with single spaces: both as the one-pass rules do."""
    rng = random.Random(7)
    alphabet = [*report.TEX, *"\\`*[]<|", " ", "  ", "\t", "\n", "\xa0", "\u2009", "a", "1", ".", "=", "-"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(20000)]
    one_pass = re.compile(r"([\\`*\[\]<|])")
    assert [md(t) for t in texts] == [one_pass.sub(r"\\\1", " ".join(t.split())) for t in texts]
    assert [report._tex(t) for t in texts] == [report.TEX_SPECIAL.sub(lambda m: report.TEX.get(m.group(), " "), t)
                                               for t in texts]  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_a_column_escaped_at_once_equals_each_text_escaped_alone(seed, monkeypatch):
    """md_column and tex_column give each text's own escape, on columns that may be swapped at once (numbers with
    ±, dashes, daggers) and columns with what must be escaped text by text (spacing, JOIN, characters a swap
    brings); the at-once path never escapes text by text."""
    rng = random.Random(seed)
    special = [*report.TEX, *"\\`*[]<|", "  ", " ", "\t", "\n", "\xa0", report.JOIN]
    plain = [*"0123456789.=-(),_%&#~", " ± ", " † ", "–", "Δ", "→", "×", " n.s.", "a", "Q"]
    columns = [
        ["".join(rng.choice(plain + special * mixed) for _ in range(rng.randrange(12))) for _ in range(300)]
        for mixed in (0, 1, 1, 1)
    ]
    for texts in [*columns, [], [""], [" x"], ["x "], ["a", " b"], ["a ", "b"]]:
        assert report.md_column(texts) == [md(t) for t in texts]
        assert report.tex_column(texts) == [report._tex(t) for t in texts]
    swappable = [t for t in columns[0] if not t.startswith(" ") and not t.endswith(" ") and "  " not in t]
    swappable = [t for t in swappable if not any(k in t for k in ("\\", "{", "}", "$", "^", ">="))]

    def refused(text: str) -> str:
        raise AssertionError(f"escaped alone: {text!r}")

    expected_md, expected_tex = [md(t) for t in swappable], [report._tex(t) for t in swappable]
    monkeypatch.setattr(report, "md", refused)
    monkeypatch.setattr(report, "_tex", refused)
    assert report.md_column(swappable) == expected_md and report.tex_column(swappable) == expected_tex


def test_every_written_output_shows_the_names_as_they_are(markup, tmp_path):
    results = load(markup)
    tables = report.build(results, columns=COLUMNS)
    paths = report.write(tables, tmp_path / "report")
    markdown = paths["report.md"].read_text()
    assert f"### {md(MODEL)} (hwA)" in markdown and r"\[bold\]loud" in markdown and not unescaped("<i>", markdown)
    assert r"t\[/x\]_%&{~^} acc" in markdown
    latex = paths["report.tex"].read_text()
    assert r"t[/x]\_\%\&\{\textasciitilde{}\textasciicircum{}\}" in latex and r"\$\textbackslash{}frac\$" in latex

    boards = leaderboard.boards(results, COLUMNS)
    files = leaderboard.write(results, boards, tmp_path / "lb")  # '$\frac$' in titles and labels: text, not math
    assert sum(f.suffix == ".png" for f in files) == len(leaderboard.FRONTIERS)
    board_md = (tmp_path / "lb" / "hwA" / "leaderboard.md").read_text()
    assert f"## {md(MACHINE)}" in board_md and r"m\[/x\]\|\`\<i>$\\frac$ · dtype(note=\[bold\]loud)" in board_md
    assert not unescaped("<b>", (tmp_path / "lb" / "README.md").read_text())
    assert f"### {md(MODEL)} · baseline" in compare.to_markdown(compare.compare(results, Results(), COLUMNS))

    hub.build(markup, tmp_path / "dataset")
    card = (tmp_path / "dataset" / "README.md").read_text()
    assert "| ``lat`\\|ency`` | ms |" in card and f"| {md(MACHINE)} (2 cores) |" in card and not unescaped("<b>", card)


def test_evaluate_refuses_a_users_report_file_before_any_run(tmp_path):
    """The report is written after the sweep: a folder it cannot write into is refused before the sweep starts."""
    (tmp_path / "report.md").write_text("my own notes")
    result = cli("evaluate", "--output", str(tmp_path), "--technique", "baseline", "--executor", "inline")
    assert result.returncode == 2 and "report.md exists and effbench did not write it" in result.stderr
    assert (tmp_path / "report.md").read_text() == "my own notes"
    assert not (tmp_path / "runs").exists()  # nothing ran
