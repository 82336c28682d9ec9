"""What effbench may replace: only files a manifest says it wrote, never a user's.

Every folder effbench writes as a whole (a dataset, leaderboards) holds ``.effbench-manifest.json``: its kind, the
effbench version and the relative path of every file written. A later write replaces such a folder only when it
holds nothing the manifest does not list; a folder without a manifest is replaced only when it is empty or exactly
what an earlier effbench wrote (its ``Output.patterns``), and is otherwise refused with a one-line error, never
emptied. New output is staged in a temporary sibling folder and swapped in at the end, so a reader never sees half
of it, and what is deleted afterwards is only what was listed, found without following a symbolic link.

Files effbench writes into a folder that is not its alone (the report files of a results store) are listed in a
manifest of their own; only listed files (or an earlier version's exact set) are ever overwritten, each atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from effbench.errors import EffbenchError
from effbench.store.validate import printable
from effbench.version import __version__

MANIFEST = ".effbench-manifest.json"
MANIFEST_FORMAT = 1
CHOOSE = "choose an empty or new folder"


@dataclass(frozen=True)
class Output:
    """One kind of output effbench writes, and how an earlier version's output of that kind (no manifest) looked."""

    kind: str  # stored in the manifest: a folder of another kind is never replaced by this one
    what: str  # how errors name it
    patterns: tuple[str, ...] = ()  # every file an earlier version wrote in a whole folder ('*' within one name)
    starts: Mapping[str, bytes] = field(default_factory=dict)  # files an earlier version always wrote: how they begin
    manifest: str = MANIFEST


def _raise(err: OSError) -> None:
    """Let a walk's error through: a folder that cannot be read must stop a check, not pass as empty."""
    raise err


def _contents(folder: Path) -> Iterator[tuple[str, bool]]:
    """Every entry below ``folder`` as (relative path, is a real folder), top-down; a symlink is never entered."""
    for root, dirs, names in os.walk(folder, onerror=_raise):
        base = Path(root).relative_to(folder)
        links = {d for d in dirs if (Path(root) / d).is_symlink()}
        dirs[:] = sorted(set(dirs) - links)
        for name in sorted({*dirs, *links, *names}):
            yield (base / name).as_posix(), name in dirs


def _scan(folder: Path, fits: Callable[[str, bool], bool]) -> tuple[set[str], set[str], str | None]:
    """The files and folders below ``folder``, or the first entry that does not fit (the walk stops there)."""
    files: set[str] = set()
    dirs: set[str] = set()
    for rel, is_dir in _contents(folder):
        if not fits(rel, is_dir):
            return files, dirs, rel
        (dirs if is_dir else files).add(rel)
    return files, dirs, None


def _ancestors(paths: Iterable[str]) -> set[str]:
    """The folders that relative paths lie in: the only folders an output may hold."""
    return {"/".join(parts[:i]) for parts in (p.split("/") for p in paths) for i in range(1, len(parts))}


def _fits(rel: str, patterns: tuple[str, ...], is_dir: bool) -> bool:
    """Whether a path is one of the patterns' files (or, for a folder, one of their folders)."""
    parts = rel.split("/")
    return any(
        (len(p) > len(parts) if is_dir else len(p) == len(parts))
        and all(fnmatchcase(a, b) for a, b in zip(parts, p, strict=False))
        for p in (pattern.split("/") for pattern in patterns)
    )


def _began(path: Path, start: bytes) -> bool:
    """Whether a regular file (not a symlink) begins with ``start``: how an earlier version's file is recognised."""
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(start)) == start


def _inside(rel: object) -> bool:
    """Whether a manifest entry is a plain relative path inside its folder (a manifest is data, not trusted)."""
    return isinstance(rel, str) and all(part not in ("", ".", "..") for part in rel.split("/"))


def _listed(manifest: Path, output: Output) -> set[str]:
    """The files a manifest of this kind lists; refuse a damaged manifest or one of another kind."""
    try:
        data = None if manifest.is_symlink() else json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(map(_inside, files)) or not isinstance(data.get("kind"), str):
        raise EffbenchError(f"{manifest} is damaged, so effbench cannot tell which files it wrote: {CHOOSE}")
    if data["kind"] != output.kind:
        raise EffbenchError(f"{manifest.parent} holds an effbench {data['kind']}, not {output.what}: {CHOOSE}")
    return set(files) - {output.manifest}


def _earlier(folder: Path, output: Output) -> set[str] | None:
    """The files of an earlier version's output (no manifest) if ``folder`` is exactly its layout, else None."""
    files, dirs, stray = _scan(
        folder, lambda rel, is_dir: not (folder / rel).is_symlink() and _fits(rel, output.patterns, is_dir)
    )
    if stray is not None or dirs != _ancestors(files):
        return None
    return files if all(_began(folder / rel, start) for rel, start in output.starts.items()) else None


def target_folder(out: Path) -> Path:
    """The real folder ``out`` names; refuse a symlink (replacing it would replace the link) and the filesystem root."""
    if out.is_symlink():
        raise EffbenchError(f"{out} is a symbolic link to {out.resolve()}: give that folder itself, or {CHOOSE}")
    target = out.resolve()
    if target.parent == target:
        raise EffbenchError(f"{out} is the root of the filesystem: {CHOOSE}")
    return target


def check_folder(target: Path, output: Output) -> set[str]:
    """The files of ``target`` effbench may delete when replacing it (manifest included); refuse anything else."""
    if not target.exists():
        return set()
    if not target.is_dir():
        raise EffbenchError(f"{target} is a file, not a folder: {CHOOSE}")
    manifest = target / output.manifest
    if manifest.exists() or manifest.is_symlink():
        listed = _listed(manifest, output) | {output.manifest}
        folders = _ancestors(listed)
        files, _, stray = _scan(target, lambda rel, is_dir: rel in (folders if is_dir else listed))
        if stray is not None:
            stray = printable(stray)  # a file name may hold a newline: the refusal stays one line
            raise EffbenchError(f"{target} holds {stray}, which effbench did not write: move it out, or {CHOOSE}")
        return files
    if not any(target.iterdir()):
        return set()
    earlier = _earlier(target, output)
    if earlier is None:
        found = printable(", ".join(sorted(p.name for p in target.iterdir())[:3]))
        raise EffbenchError(f"{target} is not empty (found {found}) and holds no {output.what}: {CHOOSE}")
    return earlier


def _sibling(path: Path, suffix: str) -> Path:
    """A hidden, unique name beside ``path``: on the same filesystem, so renaming it into place is atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{suffix}")


def _write_manifest(folder: Path, output: Output, files: Iterable[str]) -> None:
    """Record what effbench wrote, so that it (and only it) may be replaced later."""
    data = {"effbench_manifest": MANIFEST_FORMAT, "kind": output.kind, "effbench_version": __version__,
            "files": sorted(files)}  # fmt: skip
    (folder / output.manifest).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _discard(old: Path, owned: set[str]) -> None:
    """Delete the owned files of a folder moved aside, then its emptied folders; anything else stays where it is."""
    files, dirs, _ = _scan(old, lambda rel, is_dir: True)
    for rel in files & owned:
        (old / rel).unlink()
    for rel in sorted(dirs & _ancestors(owned), key=len, reverse=True):
        with suppress(OSError):  # not empty: something effbench did not write appeared since the check
            (old / rel).rmdir()
    with suppress(OSError):
        old.rmdir()


def _swap(staged: Path, target: Path, owned: set[str], manifest: str) -> None:
    """Put the staged folder where ``target`` is, then delete only what effbench had written there."""
    if not target.exists():
        os.replace(staged, target)
        return
    old = _sibling(target, "old")
    cwd = Path.cwd()
    if target == cwd or target in cwd.parents:  # renaming it away would leave the shell in a deleted folder
        old.mkdir()
        for name in sorted({rel.split("/")[0] for rel in owned}):
            os.replace(target / name, old / name)
        for entry in sorted(staged.iterdir(), key=lambda p: p.name == manifest):  # the manifest last: complete
            os.replace(entry, target / entry.name)
        staged.rmdir()
    else:
        os.replace(target, old)
        try:
            os.replace(staged, target)
        except OSError:
            os.replace(old, target)  # put the previous output back rather than leave none
            raise
    _discard(old, owned)


def replace_folder(out: Path, output: Output, write: Callable[[Path], None]) -> list[Path]:
    """Write a whole folder with ``write(staging_folder)``, swapped in for ``out``; returns the files (no manifest)."""
    target = target_folder(out)
    staged = _sibling(target, "tmp")
    try:
        owned = check_folder(target, output)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.mkdir()
        write(staged)
        files = sorted(_scan(staged, lambda rel, is_dir: True)[0])
        _write_manifest(staged, output, files)
        _swap(staged, target, owned, output.manifest)
    except OSError as err:
        raise EffbenchError(f"cannot write {out}: {err}") from None
    finally:
        if staged.is_dir() and not staged.is_symlink():
            shutil.rmtree(staged)  # a failed write's staging folder: effbench's own, created above
    return [out / rel for rel in files]


def check_files(folder: Path, output: Output, names: Iterable[str]) -> None:
    """Refuse to overwrite any of ``names`` in ``folder`` that effbench cannot show it wrote (manifest, earlier set)."""
    if folder.exists() and not folder.is_dir():
        raise EffbenchError(f"{folder} is a file, not a folder: {CHOOSE}")
    manifest = folder / output.manifest
    if manifest.exists() or manifest.is_symlink():
        owned = _listed(manifest, output)
    else:
        owned = set(output.starts) if all(_began(folder / n, s) for n, s in output.starts.items()) else set()
    for name in names:
        path = folder / name
        if name not in owned and (path.exists() or path.is_symlink()):
            raise EffbenchError(f"{path} exists and effbench did not write it: move it away and run the command again")


@contextmanager
def replaced_files(folder: Path, output: Output, names: Sequence[str]) -> Iterator[Path]:
    """A staging folder beside ``folder`` (which is not effbench's alone) to write the files ``names`` into; at the
    end each is renamed into place, the manifest last (it never lists a file not yet in place). Refused before any
    work where one of them is not effbench's; on an error nothing is replaced and the staging folder is removed."""
    staged = folder / f".effbench-{output.kind}.{uuid.uuid4().hex}.tmp"
    try:
        check_files(folder, output, names)
        folder.mkdir(parents=True, exist_ok=True)
        staged.mkdir()
        yield staged
        _write_manifest(staged, output, names)
        for name in (*names, output.manifest):
            os.replace(staged / name, folder / name)
    except OSError as err:
        raise EffbenchError(f"cannot write to {folder}: {err}") from None
    finally:
        if staged.is_dir() and not staged.is_symlink():
            shutil.rmtree(staged)
