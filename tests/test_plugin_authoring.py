"""``effbench plugins new|install|uninstall``: a generated plugin installs, shows in ``effbench plugins``, passes
its own tests and uninstalls; bad input is one line and changes nothing."""

import json
import subprocess
import sys

from tests.conftest import cli, run_cli

NAME = "effbench-scaffold-check"  # no module of this name exists, so the generated one is what is imported


def _listed() -> dict[str, str]:
    """Technique name -> distribution, as ``effbench plugins --json`` shows them."""
    shown = run_cli("plugins", "--json")
    assert shown.returncode == 0, shown.stderr
    return {p["name"]: p["distribution"] for p in json.loads(shown.stdout)["plugins"] if p["kind"] == "technique"}


def test_a_new_plugin_installs_shows_up_passes_its_tests_and_uninstalls(tmp_path):
    folder = tmp_path / "scaffold"
    made = cli("plugins", "new", NAME, "--dir", str(folder))
    assert made.returncode == 0, made.stderr
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", "effbench_scaffold_check/__init__.py", "tests/test_effbench_scaffold_check.py",
    }  # fmt: skip
    assert NAME not in _listed()
    try:
        installed = run_cli("plugins", "install", "--editable", str(folder))
        assert installed.returncode == 0, installed.stderr[-3000:]
        assert _listed()[NAME] == NAME
        own_tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
            capture_output=True, text=True, timeout=600, cwd=folder,
        )  # fmt: skip
        assert own_tests.returncode == 0 and "2 passed" in own_tests.stdout, own_tests.stdout[-3000:]
    finally:
        removed = run_cli("plugins", "uninstall", NAME)
    assert removed.returncode == 0, removed.stderr
    assert NAME not in _listed()


def test_bad_input_is_one_line_and_writes_or_installs_nothing(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("the user's")
    (tmp_path / "no-package").mkdir()
    cases = {
        ("plugins", "new", "My_Plugin"): "plugin name 'My_Plugin': use lowercase letters, digits and single hyphens",
        ("plugins", "new", "json"): "plugin name 'json': module 'json' already exists here; choose another name",
        ("plugins", "new", "fine-name", "--dir", str(tmp_path / "taken")): "already exists and is not an empty folder",
        ("plugins", "uninstall", "pyyaml"): "'pyyaml' is not an installed effbench plugin; installed plugins:",
        ("plugins", "install", str(tmp_path / "no-package")): "is a folder without pyproject.toml or setup.py",
        ("plugins", "install", "--editable", "effbench-torchao"): "--editable needs a plugin folder",
        ("plugins", "install", "x; rm -rf /"): "is neither a plugin folder nor a PyPI name",
    }
    for args, message in cases.items():
        result = cli(*args)
        assert result.returncode == 2, args
        assert result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]
    assert not (tmp_path / "fine-name").exists() and not list((tmp_path / "no-package").iterdir())
