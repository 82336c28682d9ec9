"""Build the dataset from a results store, publish it to a Hugging Face Hub dataset repo (merged with what is
already there, keyed by run id, one commit per publish) and pull it back.

Authentication is huggingface_hub's own: ``HF_TOKEN`` or the token saved by ``hf auth login``. effbench never
reads, prints or writes the token; it only hands ``token=None`` (or a caller's token) to the client.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from effbench.errors import EffbenchError
from effbench.plugins import registry
from effbench.publish.card import render
from effbench.publish.taxonomy import taxonomy_rows
from effbench.store.dataset import MergeReport, import_into_store, merge, write_dataset
from effbench.store.load import Results, load, no_results
from effbench.store.validate import Problem
from effbench.version import __version__

REPO_TYPE = "dataset"
DATA_PATTERNS = ["README.md", "runs/*", "measurements/*", "samples/*", "taxonomy/*"]

Warn = Callable[[Path, list[Problem]], None]  # told a store's bad files (left out) before anything is built or sent


@dataclass
class PublishResult:
    """What a publish did (or, with dry_run, would do)."""

    repo: str
    report: MergeReport
    message: str
    description: str
    files: list[str] = field(default_factory=list)
    created: bool = False  # the repo did not exist (with dry_run: would be created)
    commit: str | None = None  # None when nothing was committed


def collect(results: Path, warn: Warn | None = None) -> Results:
    """The valid runs of a results store plus this installation's taxonomy; bad files are left out and warned of."""
    stored = load(results, "store")
    if not stored.runs:
        raise no_results(results, stored.problems, f"run `effbench evaluate --output {results}` first")
    if stored.problems and warn:
        warn(results, stored.problems)
    return Results(stored.runs, stored.measurements, taxonomy_rows(registry()), samples=stored.samples)


def build(results: Path, out: Path, *, warn: Warn | None = None) -> list[Path]:
    """Write the dataset folder of a results store's valid runs (card included); returns the files written."""
    collected = collect(results, warn)
    return write_dataset(collected, out, render(collected, registry(), str(out)))


@contextlib.contextmanager
def _hub_errors(repo: str, endpoint: str) -> Iterator[None]:
    """Turn the client's exceptions into errors that say what to do."""
    try:
        yield
    except OfflineModeIsEnabled:
        raise EffbenchError("HF_HUB_OFFLINE is set: unset it (or set HF_HUB_OFFLINE=0) to reach the Hub") from None
    except RepositoryNotFoundError:
        raise EffbenchError(
            f"dataset {repo} was not found on {endpoint} (or it is private and your token cannot read it)"
        ) from None
    except RevisionNotFoundError:
        raise EffbenchError(f"dataset {repo} has no such revision") from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise EffbenchError(
                f"{endpoint} refused access to {repo} (HTTP {status}): log in with `hf auth login` "
                "or set HF_TOKEN to a token allowed to write there"
            ) from None
        if status == 412:
            raise EffbenchError(f"{repo} changed while publishing: run the same command again") from None
        detail = " ".join(str(err).split())  # the client's message spans lines (status, URL, server's reason)
        raise EffbenchError(f"the Hub refused the request for {repo}: {detail}") from None
    except (httpx2.HTTPError, LocalEntryNotFoundError) as err:
        raise EffbenchError(f"cannot reach {endpoint}: {' '.join(str(err).split())}") from None  # one line


def _api(endpoint: str | None, token: str | None) -> HfApi:
    return HfApi(
        endpoint=endpoint or constants.ENDPOINT, token=token, library_name="effbench", library_version=__version__
    )


def _download(api: HfApi, repo: str, revision: str, dest: Path) -> Results:
    """The repo's data files, validated whole; a file the client will not write here is an error, not a crash."""
    try:
        snapshot_download(
            repo_id=repo,
            repo_type=REPO_TYPE,
            revision=revision,
            local_dir=dest,
            allow_patterns=DATA_PATTERNS,
            endpoint=api.endpoint,
            token=api.token,
            library_name="effbench",
            library_version=__version__,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise  # put in words by _hub_errors
    except (OSError, ValueError) as err:  # a name with '..' (refused by the client), too long for this filesystem
        first = str(err).partition("\n")[0] or type(err).__name__
        raise EffbenchError(f"cannot download {repo}: {first}") from None
    return load(dest, "dataset")


def fetch(
    repo: str, dest: Path, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None
) -> Results:
    """Download a published dataset into ``dest`` and validate it whole."""
    api = _api(endpoint, token)
    with _hub_errors(repo, api.endpoint):
        sha = api.repo_info(repo, repo_type=REPO_TYPE, revision=revision).sha
        return _download(api, repo, sha, dest)


def pull(
    repo: str, out: Path, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None
) -> MergeReport:
    """Add a published dataset's runs to the results store ``out``; a bad dataset changes nothing."""
    with tempfile.TemporaryDirectory(prefix="effbench-pull-") as tmp:
        published = fetch(repo, Path(tmp), revision=revision, endpoint=endpoint, token=token)
    return import_into_store(published, out)


def _remote(api: HfApi, repo: str, workdir: Path) -> tuple[Results, str | None]:
    """What the repo holds now and its head commit; empty Results and None when the repo does not exist."""
    try:
        info = api.repo_info(repo, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        return Results(), None
    files = {s.rfilename for s in info.siblings or []}
    if not any(f.startswith("runs/") for f in files):
        if files - {".gitattributes"}:
            raise EffbenchError(f"{repo} holds files that are not an effbench dataset: publish to another repo")
        return Results(), info.sha
    return _download(api, repo, info.sha, workdir), info.sha


def _message(report: MergeReport, merged: Results) -> tuple[str, str]:
    """A commit title that says what changed, and a description listing the runs."""
    changed = [*report.added, *report.updated]
    machines = sorted({merged.run(r).hardware_fingerprint for r in changed})
    title = (
        f"effbench {__version__}: add {len(report.added)} run(s), update {len(report.updated)}"
        f" from {len(machines)} machine(s)"
    )
    if not changed:
        title = f"effbench {__version__}: update the taxonomy and card"
    lines = []
    for run_id in changed:
        run = merged.run(run_id)
        verb = "add" if run_id in report.added else "update"
        lines.append(
            f"- {verb} {run_id}: {run.model} × {run.label}, {run.status}, on {run.hardware_fingerprint} ({run.machine})"
        )
    return title, "\n".join(lines)


def publish(
    results: Path,
    repo: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    warn: Warn | None = None,
) -> PublishResult:
    """Merge the store's valid runs into the dataset repo ``repo`` and commit once; nothing is written on a dry run."""
    local = collect(results, warn)
    api = _api(endpoint, token)
    with _hub_errors(repo, api.endpoint), tempfile.TemporaryDirectory(prefix="effbench-publish-") as tmp:
        remote, head = _remote(api, repo, Path(tmp) / "remote")
        merged, report = merge(remote, local)
        out = Path(tmp) / "dataset"
        files = write_dataset(merged, out, render(merged, registry(), repo))
        title, description = _message(report, merged)
        result = PublishResult(repo, report, title, description, [f.relative_to(out).as_posix() for f in files])
        result.created = head is None
        if dry_run or (head is not None and not report.changed):
            return result
        if head is None:
            api.create_repo(repo, repo_type=REPO_TYPE, private=private, exist_ok=True)
            head = api.repo_info(repo, repo_type=REPO_TYPE).sha
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(out / name)) for name in result.files]
        commit = api.create_commit(
            repo,
            repo_type=REPO_TYPE,
            operations=operations,
            commit_message=title,
            commit_description=description,
            parent_commit=head,
        )
        result.commit = commit.oid
    return result
