"""A local Hub-API test server on 127.0.0.1: the endpoints the real ``huggingface_hub`` client uses to create a
repo, commit files, read repo info and trees, and download files, with git-like commits in memory.

It records every request (method, path, headers, body) so tests can check what the client sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
REPO = r"(?P<repo>[^/]+/[^/]+)"


def git_hash(data: bytes) -> str:
    """The git blob id of ``data`` (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    """A snapshot of every file of a repo, with the commit's message."""

    oid: str
    title: str
    description: str
    files: dict[str, bytes]


@dataclass
class Repo:
    """A repo: its commits on ``main`` (oldest first)."""

    repo_id: str
    repo_type: str
    private: bool
    commits: list[Commit] = field(default_factory=list)

    def resolve(self, revision: str) -> Commit | None:
        """``main`` is the head; a commit id is that commit; anything else does not exist."""
        revision = unquote(revision)
        if revision == "main":
            return self.commits[-1]
        return next((c for c in self.commits if c.oid == revision), None)

    def add_commit(self, title: str, description: str, files: dict[str, bytes]) -> Commit:
        """Append a commit; its id hashes the parent, the message and the content."""
        digest = hashlib.sha1()
        digest.update((self.commits[-1].oid if self.commits else "").encode())
        digest.update(title.encode())
        for path in sorted(files):
            digest.update(path.encode() + git_hash(files[path]).encode())
        commit = Commit(digest.hexdigest(), title, description, files)
        self.commits.append(commit)
        return commit


@dataclass
class Request:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class HubState:
    """Repos keyed by type and id, the accepted tokens, and every request received."""

    def __init__(self, tokens: set[str]) -> None:
        self.tokens = tokens
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.before_commit: list[Callable[[Repo], None]] = []  # e.g. someone else committing first (a race)
        self.unrouted: list[str] = []  # requests for endpoints this server does not implement


class HttpError(Exception):
    """An error response the Hub would send: status, message and the X-Error-Code the client reads."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class Handler(BaseHTTPRequestHandler):
    """Routes the Hub API calls onto a HubState."""

    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``HubState.requests`` instead."""

    @property
    def state(self) -> HubState:
        return self.server.state

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in self.state.tokens

    def _require_auth(self) -> None:
        if not self._authorized():
            raise HttpError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.state.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._authorized()):
            raise HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _handle(self, routes: list[tuple[str, Any]]) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.state.lock:
            self.state.requests.append(
                Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        url = urlsplit(self.path)
        try:
            for pattern, handler in routes:
                match = re.fullmatch(pattern, url.path)
                if match:
                    with self.state.lock:
                        handler(match, parse_qs(url.query), body)
                    return
            self.state.unrouted.append(f"{self.command} {url.path}")
            raise HttpError(404, f"no route for {self.command} {url.path}")
        except HttpError as err:
            headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, json.dumps({"error": err.message}).encode(), headers)

    def do_GET(self) -> None:
        self._handle(
            [
                (rf"/api/(?P<type>models|datasets|spaces)/{REPO}(/revision/(?P<rev>[^/]+))?", self.repo_info),
                (rf"/api/(?P<type>model|dataset|space)s/{REPO}/tree/(?P<rev>[^/]+)(/(?P<path>.*))?", self.tree),
                (rf"/(?P<prefix>datasets/|spaces/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self.resolve),
            ]
        )

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._handle(
            [
                (r"/api/repos/create", self.create_repo),
                (r"/api/validate-yaml", self.validate_yaml),
                (rf"/api/(?P<type>model|dataset|space)s/{REPO}/preupload/(?P<rev>[^/]+)", self.preupload),
                (rf"/api/(?P<type>model|dataset|space)s/{REPO}/commit/(?P<rev>[^/]+)", self.commit),
            ]
        )

    # --- endpoints -----------------------------------------------------------------------------------------

    def create_repo(self, match: re.Match, query: dict, body: bytes) -> None:
        self._require_auth()
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = f"{self.server.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if (repo_type, repo_id) in self.state.repos:
            raise HttpError(409, "You already created this dataset repo")
        repo = Repo(repo_id, repo_type, payload.get("visibility") == "private")
        repo.add_commit("initial commit", "", {".gitattributes": GITATTRIBUTES})
        self.state.repos[(repo_type, repo_id)] = repo
        self._json({"url": url, "name": repo_id})

    def repo_info(self, match: re.Match, query: dict, body: bytes) -> None:
        repo = self._repo(match["type"].removesuffix("s"), match["repo"])
        commit = self._commit(repo, match["rev"] or "main")
        self._json(
            {
                "id": repo.repo_id,
                "sha": commit.oid,
                "private": repo.private,
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            }
        )

    def tree(self, match: re.Match, query: dict, body: bytes) -> None:
        repo = self._repo(match["type"], match["repo"])
        commit = self._commit(repo, match["rev"])
        base = unquote(match["path"] or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        entries: dict[str, dict] = {}
        for path, data in sorted(commit.files.items()):
            if base and not path.startswith(base + "/"):
                continue
            rest = path[len(base) + 1 :] if base else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(filter(None, [base, *parts[:depth]]))
                if recursive or depth == 1:
                    entries[folder] = {"type": "directory", "path": folder, "oid": git_hash(folder.encode())}
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "oid": git_hash(data), "size": len(data)}
        self._json(list(entries.values()))

    def resolve(self, match: re.Match, query: dict, body: bytes) -> None:
        repo_type = (match["prefix"] or "models/").removesuffix("s/")
        repo = self._repo(repo_type, match["repo"])
        commit = self._commit(repo, match["rev"])
        path = unquote(match["path"])
        if path not in commit.files:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound")
        data = commit.files[path]
        self._send(200, data, {"ETag": f'"{git_hash(data)}"', "X-Repo-Commit": commit.oid})

    def validate_yaml(self, match: re.Match, query: dict, body: bytes) -> None:
        content = json.loads(body)["content"]
        header = re.match(r"---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            meta = yaml.safe_load(header[1]) if header else {}
        except yaml.YAMLError as err:
            self._json({"errors": [{"message": f"invalid YAML: {err}"}]}, 400)
            return
        errors = [
            {"message": f"configs entry {c!r} needs config_name and data_files"}
            for c in (meta or {}).get("configs", [])
            if not (isinstance(c, dict) and c.get("config_name") and c.get("data_files"))
        ]
        self._json({"errors": errors, "warnings": []}, 400 if errors else 200)

    def preupload(self, match: re.Match, query: dict, body: bytes) -> None:
        self._require_auth()
        repo = self._repo(match["type"], match["repo"])
        commit = self._commit(repo, match["rev"])
        files = json.loads(body)["files"]
        answer = []
        for f in files:
            existing = commit.files.get(f["path"])
            answer.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",  # content comes inline (base64) in the commit, never LFS/Xet
                    "shouldIgnore": False,
                    "oid": git_hash(existing) if existing is not None else None,
                }
            )
        self._json({"files": answer})

    def commit(self, match: re.Match, query: dict, body: bytes) -> None:
        self._require_auth()
        repo = self._repo(match["type"], match["repo"])
        for hook in self.state.before_commit:
            hook(repo)
        head = self._commit(repo, match["rev"])
        if head is not repo.commits[-1]:
            raise HttpError(400, "this server commits to main only")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, head.oid):
            raise HttpError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise HttpError(400, f"this test server does not accept {key!r} operations")
        commit = repo.add_commit(header["summary"], header.get("description", ""), files)
        url = f"{self.server.url}/{repo.repo_type}s/{repo.repo_id}/commit/{commit.oid}"
        self._json({"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})


class HubServer(ThreadingHTTPServer):
    """The server, bound to 127.0.0.1 on a free port, serving in a daemon thread until ``stop``."""

    daemon_threads = True

    def __init__(self, tokens: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = HubState(tokens)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=10)
