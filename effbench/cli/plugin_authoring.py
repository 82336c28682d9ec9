"""``effbench plugins new|install|uninstall``: start a technique plugin from a working template, and manage
plugins in the running environment with its own pip (``python -m pip``, like ``llm install``)."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import keyword
import re
import subprocess
import sys
from pathlib import Path
from string import Template

from rich.markup import escape

from effbench.errors import EffbenchError

PLUGIN_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # a distribution name that is also a module once - is _

PYPROJECT = Template("""[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "An effbench technique plugin: $technique"
requires-python = ">=3.11"
dependencies = ["effbench"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.effbench]
$module = "$module"

[tool.setuptools]
packages = ["$module"]
""")

MODULE = Template('''"""$technique: decoder linear weights rounded to few levels per row (fake quantization).

Replace the body of ``apply`` with your technique; keep ``preflight`` refusing what it cannot act on.
"""

from typing import Annotated, Any

from pydantic import Field

from effbench import NotApplicable, Technique, hookimpl
from effbench.modeling import linear_layers


class RoundWeights(Technique):
    """Each output row of a decoder linear layer keeps at most 2**bits distinct weight values."""

    name = "$technique"
    stage = "inference"
    resources = ("memory",)
    description = "Round decoder linear weights to 2**bits levels per output row ($dist)."

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        bits: Annotated[int, Field(ge=1, le=8, description="levels per row: 2**bits")] = 4,
    ) -> Any:
        import torch

        layers = linear_layers(model)  # Llama's, GPT-2's, Qwen's ... decoder linear layers alike
        if not layers:
            raise NotApplicable("the model has no decoder linear layers")
        levels = 2**bits - 1
        with torch.no_grad():
            for _, layer in layers:
                weight = layer.weight
                low = weight.amin(dim=1, keepdim=True)
                step = (weight.amax(dim=1, keepdim=True) - low).clamp_min(1e-12) / levels
                weight.copy_(torch.round((weight - low) / step) * step + low)
        return model


@hookimpl
def register_techniques(register):
    register(RoundWeights())
''')

TEST = Template('''"""The plugin registers its technique and the technique really changes the model."""

import torch

import $module
from effbench.modeling import linear_layers
from effbench.reference.zoo import load
from effbench.testing import registered


def test_the_technique_is_registered():
    with registered($module) as reg:
        assert reg.technique("$technique").stage == "inference"


def test_the_technique_rounds_every_row_and_the_model_still_runs():
    model, tokenizer = load("zoo:micro-s")
    with registered($module) as reg:
        technique = reg.technique("$technique")
        model = technique.apply(model, tokenizer, **technique.validate({"bits": 2}))
    for _, layer in linear_layers(model):
        assert max(len(torch.unique(row)) for row in layer.weight) <= 4
    logits = model(**tokenizer("copy abc > ", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()
''')

README = Template("""# $dist

An [effbench](https://github.com/effbench/effbench) technique plugin, made by `effbench plugins new $dist`.
It registers the technique `$technique` through the `effbench` entry-point group (`pyproject.toml`):
it rounds each decoder linear layer's weights to `2**bits` levels per output row. Replace its `apply`
with your own technique (docs/plugins.md of effbench describes every hook and the `Technique` API).

```bash
effbench plugins install ./$folder        # pip install -e into the environment effbench runs in
effbench plugins                          # lists $technique, from $dist
effbench evaluate --technique $technique:bits=4 --task micro_copy --limit 20
python -m pytest $folder/tests            # the plugin's own tests
effbench plugins uninstall $dist
```
""")


def check_name(name: str) -> str:
    """A plugin name that is a valid distribution and module name, and no module already importable here."""
    if not PLUGIN_NAME.fullmatch(name):
        raise EffbenchError(
            f"plugin name {name!r}: use lowercase letters, digits and single hyphens, starting with a letter "
            "(e.g. my-technique)"
        )
    module = name.replace("-", "_")
    if keyword.iskeyword(module) or importlib.util.find_spec(module) is not None:
        raise EffbenchError(f"plugin name {name!r}: module {module!r} already exists here; choose another name")
    return module


def write_plugin(name: str, folder: Path) -> list[Path]:
    """Write a ready technique plugin package into ``folder`` (new or empty); returns the files written."""
    module = check_name(name)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise EffbenchError(f"{folder} already exists and is not an empty folder: choose a new one")
    values = {"dist": name, "module": module, "technique": name, "folder": folder.name}
    files = {
        folder / "pyproject.toml": PYPROJECT,
        folder / module / "__init__.py": MODULE,
        folder / "tests" / f"test_{module}.py": TEST,
        folder / "README.md": README,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values), encoding="utf-8")
    return list(files)


def plugin_distributions() -> dict[str, str]:
    """Installed distributions with an ``effbench`` entry point, by normalised name, with their version."""
    from effbench.plugins import ENTRY_POINT_GROUP

    return {
        _normalised(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if any(ep.group == ENTRY_POINT_GROUP for ep in dist.entry_points)
    }


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip(*args: str) -> int:
    """Run this environment's pip (the interpreter effbench runs in), its output going to the terminal."""
    return subprocess.run([sys.executable, "-m", "pip", *args], check=False).returncode


def install_args(target: str, editable: bool) -> list[str]:
    """pip's arguments for a plugin given as a folder (installed editable when asked) or a PyPI name."""
    if Path(target).is_dir():
        if not (Path(target) / "pyproject.toml").is_file() and not (Path(target) / "setup.py").is_file():
            raise EffbenchError(f"{target} is a folder without pyproject.toml or setup.py: not a Python package")
        return ["install", *(["-e"] if editable else []), str(Path(target).resolve())]
    if editable:
        raise EffbenchError(f"--editable needs a plugin folder; {target!r} is not one")
    if target.startswith("-") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[\w,.-]+\])?([<>=!~]=?[\w.*+-]+)?",
                                                  target):  # fmt: skip
        raise EffbenchError(f"{target!r} is neither a plugin folder nor a PyPI name (e.g. effbench-torchao)")
    return ["install", target]


def cmd_plugins_new(args: argparse.Namespace) -> int:
    """Write a ready technique plugin (pyproject with the entry point, technique, test, README) into a new folder."""
    from effbench.cli.console import console

    folder = args.dir or Path(args.name)
    files = write_plugin(args.name, folder)
    console.print(escape(f"plugin {args.name} written to {folder}: {', '.join(str(f) for f in files)}"))
    console.print(escape(f"next: effbench plugins install --editable {folder}"))
    return 0


def cmd_plugins_install(args: argparse.Namespace) -> int:
    """Install a plugin (a folder or a PyPI name) into the environment effbench runs in, with its pip."""
    code = pip(*install_args(args.target, args.editable))
    if code:
        raise EffbenchError(f"pip could not install {args.target} (exit code {code}; its output is above)")
    return 0


def cmd_plugins_uninstall(args: argparse.Namespace) -> int:
    """Uninstall an effbench plugin distribution from the environment effbench runs in."""
    installed = plugin_distributions()
    if _normalised(args.name) not in installed:
        known = ", ".join(sorted(installed)) or "none"
        raise EffbenchError(f"{args.name!r} is not an installed effbench plugin; installed plugins: {known}")
    code = pip("uninstall", "--yes", args.name)
    if code:
        raise EffbenchError(f"pip could not uninstall {args.name} (exit code {code}; its output is above)")
    return 0


def add_commands(plugins: argparse.ArgumentParser) -> None:
    """Add ``new``, ``install`` and ``uninstall`` under ``effbench plugins``."""
    sub = plugins.add_subparsers(dest="plugins_command", metavar="{new,install,uninstall}")
    new = sub.add_parser("new", help=cmd_plugins_new.__doc__, description=cmd_plugins_new.__doc__)
    new.add_argument("name", help="plugin (distribution and technique) name, e.g. my-technique")
    new.add_argument("--dir", type=Path, help="folder to write (default: ./NAME); must be new or empty")
    new.set_defaults(func=cmd_plugins_new)
    install = sub.add_parser("install", help=cmd_plugins_install.__doc__, description=cmd_plugins_install.__doc__)
    install.add_argument("target", help="a plugin folder or a PyPI name")
    install.add_argument("--editable", "-e", action="store_true", help="install a folder editable (pip -e)")
    install.set_defaults(func=cmd_plugins_install)
    uninstall = sub.add_parser(
        "uninstall", help=cmd_plugins_uninstall.__doc__, description=cmd_plugins_uninstall.__doc__
    )
    uninstall.add_argument("name", help="the plugin's distribution name (`effbench plugins` shows it)")
    uninstall.set_defaults(func=cmd_plugins_uninstall)
