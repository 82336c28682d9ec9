"""Reading a suite file: a strict YAML subset (no anchors, aliases or tags; bounded size and depth), one clear error.

A suite is plain data; YAML's aliases (an alias bomb), tags (arbitrary types) and deep nesting
(Python's recursion) are refused while parsing, so a bad file is a sentence, never a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

from effbench.errors import EffbenchError

MAX_SUITE_BYTES = 1_000_000
# Deeper than any suite needs; deeper YAML would exhaust Python's recursion while it is composed.
MAX_DEPTH = 32
# Plain YAML values a suite uses; dates (2024-13-45 raises) and the `=` value type are read as strings.
SCALAR_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float")}


class SuiteLoader(yaml.SafeLoader):
    """YAML as suites are written: no anchors or aliases (an alias bomb cannot expand), tags or dates, bounded depth."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag in SCALAR_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Refuse anchors, aliases, tags and deep nesting as soon as the parser meets them, before anything expands."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            problem = "YAML anchors and aliases (&name, *name) are not supported: write each value out"
        elif getattr(event, "tag", None) is not None:
            problem = f"YAML tags ({event.tag}) are not supported: write the plain value (quoted for a string)"
        elif self.depth >= MAX_DEPTH:
            problem = f"nested more than {MAX_DEPTH} levels deep"
        else:
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1
        raise yaml.composer.ComposerError(None, None, problem, event.start_mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A number YAML's patterns accept but Python cannot convert (``0b_``, 5,000 digits) is a YAML error too."""
        try:
            return super().construct_object(node, deep)
        except ValueError:
            shown = node.value if len(node.value) <= 20 else f"{node.value[:20]}…"
            problem = f"{shown!r} is not a valid number"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def read_yaml(text: str) -> Any:
    """Parse suite YAML (a file or a short form's value) with ``SuiteLoader``."""
    loader = SuiteLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(err: yaml.YAMLError, located: bool = True) -> str:
    """A YAML error in one line, what is wrong and (``located``) where: PyYAML's own text spans several lines."""
    if isinstance(err, yaml.reader.ReaderError):
        return f"unacceptable character #x{err.character:04x}: {err.reason} (position {err.position})"
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if located and mark else ""
        return f"{err.problem}{where}"
    return " ".join(str(err).split())


def read_suite_file(path: Path) -> dict[str, Any]:
    """The fields of a suite file; whatever is wrong with the file (or its YAML) is one ``EffbenchError``."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)
    except FileNotFoundError:
        raise EffbenchError(f"suite file {path} does not exist") from None
    except IsADirectoryError:
        raise EffbenchError(f"suite file {path} is a directory: give a suite YAML file") from None
    except OSError as err:
        raise EffbenchError(f"cannot read suite file {path}: {err.strerror or err}") from None
    if len(raw) > MAX_SUITE_BYTES:
        raise EffbenchError(f"{path}: larger than {MAX_SUITE_BYTES:,} bytes: a suite is a short YAML file")
    try:
        data = read_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise EffbenchError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}): save it as UTF-8"
        ) from None
    except yaml.YAMLError as err:
        raise EffbenchError(f"{path}: not valid YAML: {yaml_problem(err)}") from None
    if data is None:  # empty, or only comments: every field keeps its default
        return {}
    if not isinstance(data, dict):
        raise EffbenchError(f"{path}: a suite is a mapping of fields, got {type(data).__name__}")
    return data
