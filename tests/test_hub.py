"""Publish to and pull from a Hub, end to end, against the local Hub-API server with the real client.

Nothing here reaches the real Hub: ``hub_server`` listens on 127.0.0.1 and every call passes its URL.
"""

import socket
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
from huggingface_hub import HfApi, constants, snapshot_download

from effbench.errors import EffbenchError
from effbench.present.compare import OTHER, SAME, YOURS, compare
from effbench.publish import hub
from effbench.records import SCHEMA_VERSION, MeasurementRow, RunRecord, SampleRow
from effbench.store.load import load
from effbench.store.results import ResultsStore
from effbench.store.validate import VERSION_KEY
from tests.conftest import QUICK_SCENARIO, cli, run_cli
from tests.hub_server import HubServer
from tests.store_helpers import COLUMNS, as_written_by, rewrite, synthetic_store, values_as_text

TOKEN = "hf_effbenchFakeTestToken0123456789abcdef"
REPO = "effbench-org/results"


@pytest.fixture
def hub_server(monkeypatch, tmp_path):
    """A local Hub that accepts TOKEN; the client is allowed online (the suite runs with HF_HUB_OFFLINE=1)."""
    server = HubServer({TOKEN}).start()
    # The client reads these at import time, so the variables alone come too late for this process; telemetry
    # (agent detection) would call the default endpoint, the real Hub. Every call below passes the local URL.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    resolve, elsewhere = socket.getaddrinfo, []

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            elsewhere.append(host)
            raise OSError(f"the Hub tests reach 127.0.0.1 only, not {host}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    yield server
    server.stop()
    assert not elsewhere, f"this process tried to reach {elsewhere}"


def _cli_env(server: HubServer, tmp_path: Path, token: str | None = TOKEN) -> dict[str, str]:
    """A child process that talks to the local server only, logs every request (HF_DEBUG) and has no saved token."""
    env = {
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": server.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_VERBOSITY": "debug",
        "HF_DEBUG": "1",
    }
    return {**env, "HF_TOKEN": token} if token else env


def _repo(server: HubServer):
    return server.state.repos[("dataset", REPO)]


def _publish(server: HubServer, store: ResultsStore, **kwargs) -> hub.PublishResult:
    return hub.publish(store.root, REPO, endpoint=server.url, token=TOKEN, **kwargs)


def test_round_trip_gives_the_same_rows_and_publishing_twice_adds_nothing(hub_server, tmp_path):
    store = synthetic_store(tmp_path / "store")
    first = _publish(hub_server, store)
    repo = _repo(hub_server)
    assert first.created and first.commit == repo.commits[-1].oid and len(repo.commits) == 2
    assert repo.commits[-1].title == first.message and "add 4 run(s), update 0 from 1 machine(s)" in first.message
    assert "zoo:micro-m × prune-magnitude" in repo.commits[-1].description
    assert sorted(repo.commits[-1].files) == [
        ".gitattributes", "README.md", "measurements/hw-hwA.parquet", "runs/hw-hwA.parquet", "samples/hw-hwA.parquet",
        "taxonomy/taxonomy.parquet",
    ]  # fmt: skip

    again = _publish(hub_server, store)
    assert again.commit is None and not again.report.changed and len(repo.commits) == 2

    folder = snapshot_download(REPO, repo_type="dataset", endpoint=hub_server.url, local_dir=tmp_path / "dl")
    stored = load(store.root)
    for kind in (RunRecord, MeasurementRow):
        loaded = datasets.load_dataset(folder, kind.table, split="train", cache_dir=str(tmp_path / "cache"))
        assert loaded.to_list() == stored.table(kind).to_pylist()

    report = hub.pull(REPO, tmp_path / "pulled", endpoint=hub_server.url, token=TOKEN)
    pulled = load(tmp_path / "pulled")
    assert len(report.added) == 4 and pulled == stored


def test_new_runs_are_added_in_one_more_commit_without_duplicates(hub_server, tmp_path):
    store = synthetic_store(tmp_path / "store")
    _publish(hub_server, store)
    synthetic_store(store.root, prefix="more-")  # four more runs on the same machine
    result = _publish(hub_server, store)
    assert len(result.report.added) == 4 and len(result.report.kept) == 4 and len(_repo(hub_server).commits) == 3
    runs = hub.fetch(REPO, tmp_path / "dl", endpoint=hub_server.url, token=TOKEN).runs
    assert len(runs) == 8 == len({r.run_id for r in runs})


def test_a_second_machine_merges_in_and_compare_separates_it(hub_server, tmp_path):
    mine = synthetic_store(tmp_path / "mine", "hwA")
    _publish(hub_server, synthetic_store(tmp_path / "neighbour", "hwA", prefix="n-"))  # same machine type
    _publish(hub_server, synthetic_store(tmp_path / "far", "hwB", scale=0.25))
    _publish(hub_server, mine)
    published = hub.fetch(REPO, tmp_path / "dl", endpoint=hub_server.url, token=TOKEN)
    assert {fp: len(ids) for fp, ids in published.hardware().items()} == {"hwA": 8, "hwB": 4}

    comparisons = compare(load(mine.root), published, COLUMNS)
    assert [c.title for c in comparisons][:2] == ["zoo:micro-m · baseline", "zoo:micro-m · dtype(dtype=bf16)"]
    for c in comparisons:
        assert c.sources == [YOURS, SAME, OTHER]  # my own published copy is not shown twice
        hardware = [row[1] for row in c.rows]
        assert hardware[0].startswith("hwA (Test CPU A") and hardware[2].startswith("hwB (Test CPU B (64 cores)")
    baseline = comparisons[0]
    latency = baseline.headers.index("Latency (ms)")
    assert [row[latency] for row in baseline.rows] == ["100.0", "100.0", "25.0"]


def _bad_dataset(folder: Path, table: str, mutate) -> Path:
    rewrite(next((folder / table).glob("*.parquet")), mutate)
    return folder


@pytest.mark.parametrize(
    ("table", "mutate", "message"),
    [
        ("measurements", values_as_text, "column 'value' has type string, expected double"),
        ("runs", lambda t: t.drop_columns(["status"]), "missing column 'status'"),
        ("runs", lambda t: t.set_column(1, "schema_version", pa.array(["2.0"] * len(t))).replace_schema_metadata(
            {VERSION_KEY: b"2.0"}), f"version 2.0, this effbench reads {SCHEMA_VERSION}: upgrade"),
    ],
)  # fmt: skip
def test_pulling_a_bad_dataset_changes_nothing(hub_server, tmp_path, table, mutate, message):
    source = synthetic_store(tmp_path / "source")
    hub.build(source.root, tmp_path / "dataset")
    api = HfApi(endpoint=hub_server.url, token=TOKEN)
    api.create_repo(REPO, repo_type="dataset")
    api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=_bad_dataset(tmp_path / "dataset", table, mutate))

    target = synthetic_store(tmp_path / "target", "hwB")
    before = {p: p.read_bytes() for p in target.root.rglob("*") if p.is_file()}
    with pytest.raises(EffbenchError, match="is invalid; nothing was changed") as err:
        hub.pull(REPO, target.root, endpoint=hub_server.url, token=TOKEN)
    assert message in str(err.value)
    assert {p: p.read_bytes() for p in target.root.rglob("*") if p.is_file()} == before
    commits = len(_repo(hub_server).commits)
    with pytest.raises(EffbenchError, match=message.split(":")[0]):  # nor is it published into
        _publish(hub_server, target)
    assert len(_repo(hub_server).commits) == commits


def test_publishing_into_a_foreign_repo_or_after_a_race_is_refused(hub_server, tmp_path):
    api = HfApi(endpoint=hub_server.url, token=TOKEN)
    api.create_repo(REPO, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"# my notes\n", path_in_repo="README.md", repo_id=REPO, repo_type="dataset")
    store = synthetic_store(tmp_path / "store")
    with pytest.raises(EffbenchError, match="holds files that are not an effbench dataset"):
        _publish(hub_server, store)
    assert len(_repo(hub_server).commits) == 2

    other = "effbench-org/raced"
    hub.publish(store.root, other, endpoint=hub_server.url, token=TOKEN)
    synthetic_store(store.root, prefix="new-")
    raced = hub_server.state.repos[("dataset", other)]
    hub_server.state.before_commit.append(lambda repo: repo.add_commit("someone else", "", repo.commits[-1].files))
    with pytest.raises(EffbenchError, match="changed while publishing: run the same command again"):
        hub.publish(store.root, other, endpoint=hub_server.url, token=TOKEN)
    assert [c.title for c in raced.commits][-1] == "someone else"


def test_private_repo_needs_a_token_that_can_read_it(hub_server, tmp_path):
    _publish(hub_server, synthetic_store(tmp_path / "store"), private=True)
    assert _repo(hub_server).private
    with pytest.raises(EffbenchError, match=r"not found .* private and your token cannot read it"):
        hub.fetch(REPO, tmp_path / "dl", endpoint=hub_server.url, token="hf_someoneElse")
    assert len(hub.fetch(REPO, tmp_path / "dl", endpoint=hub_server.url, token=TOKEN).runs) == 4


def test_cli_round_trip_never_writes_the_token(hub_server, tmp_path):
    synthetic_store(tmp_path / "effbench-results")
    synthetic_store(tmp_path / "other-machine", "hwB")
    env, url = _cli_env(hub_server, tmp_path), hub_server.url
    outputs = []

    def run(*args):
        result = run_cli(*args, "--endpoint", url, env=env, cwd=tmp_path) if args[0] != "leaderboard" else run_cli(
            *args, env=env, cwd=tmp_path)  # fmt: skip
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, result.stderr
        return result.stdout

    dry = run("publish", "--repo", REPO, "--dry-run")
    assert "dry run, nothing sent: would create dataset" in dry and not hub_server.state.repos
    assert "published to" in run("publish", "--repo", REPO)
    assert "already up to date" in run("publish", "--repo", REPO)
    assert "4 runs added" in run("publish", "--repo", REPO, "--results", "other-machine")
    assert "8 runs added" in run("dataset", "pull", REPO)
    shown = run("compare", "--against", REPO, "--markdown", "compare.md")
    assert "yours" in shown and "OTHER hardware" in shown
    assert "| published · OTHER hardware | hwB (Test CPU B" in (tmp_path / "compare.md").read_text()
    run("leaderboard", "--results", f"effbench-pulled/{REPO}", "--out", "boards")
    assert (tmp_path / "boards" / "hwB" / "pareto-energy.png").is_file()

    sent = [r for r in hub_server.state.requests if r.headers.get("authorization") == f"Bearer {TOKEN}"]
    assert sent, "the token was never used, so scanning for it proves nothing"
    secret = TOKEN.encode()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20 and not [p for p in written if secret in p.read_bytes()]
    assert not [o for o in outputs if TOKEN in o] and any("curl" in o for o in outputs)  # HF_DEBUG logged requests
    assert not hub_server.state.unrouted
    assert not [r for r in hub_server.state.requests if secret in r.body or TOKEN in r.path]
    files = [d for repo in hub_server.state.repos.values() for c in repo.commits for d in c.files.values()]
    assert files and not [d for d in files if secret in d]


def test_cli_refuses_bad_input_with_clear_errors(hub_server, tmp_path):
    store = synthetic_store(tmp_path / "effbench-results")
    env = _cli_env(hub_server, tmp_path, token=None)
    no_token = run_cli("publish", "--repo", REPO, "--endpoint", hub_server.url, env=env, cwd=tmp_path)
    assert no_token.returncode == 2 and "hf auth login" in no_token.stderr and not hub_server.state.repos

    offline = run_cli("publish", "--repo", REPO, env={**env, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert offline.returncode == 2 and "HF_HUB_OFFLINE is set" in offline.stderr

    bad_id = run_cli("publish", "--repo", "../etc", env=env, cwd=tmp_path)
    assert bad_id.returncode == 2 and "not a dataset id of the form ORG/NAME" in bad_id.stderr

    for victim in store.files("runs"):  # a store's bad files are skipped (tests/test_damaged_store.py): all of them
        victim.write_bytes(b"")
    seen = len(hub_server.state.requests)
    broken = run_cli(
        "publish", "--repo", REPO, "--endpoint", hub_server.url, env=_cli_env(hub_server, tmp_path), cwd=tmp_path
    )
    assert broken.returncode == 2 and "every run has a damaged file (runs/hwA-0.parquet: empty file" in broken.stderr
    assert len(hub_server.state.requests) == seen  # refused before anything was sent


def test_a_real_run_round_trips_through_build_publish_pull_and_load(hub_server, tmp_path):
    """One short real run of the reference model: evaluate -> build -> publish -> pull -> load gives the same rows."""
    results = tmp_path / "results"
    evaluate = ("evaluate", "--task", "micro_copy", "--technique", "baseline", "--limit", "5")
    run = cli(*evaluate, "--output", str(results), "--scenario", QUICK_SCENARIO, "--executor", "inline")
    assert run.returncode == 0, run.stderr
    store = ResultsStore(results)
    stored = load(results)
    quality = [m for m in stored.measurements if m.resource == "quality" and m.task]  # task metrics, not fidelity
    assert quality and {m.task for m in quality} == {"micro_copy"}
    outcomes = sorted((s.task, s.metric, s.doc_id) for s in stored.samples)
    assert outcomes == [("micro_copy", "exact_match", i) for i in range(5)]

    built = cli("dataset", "build", "--results", str(results), "--out", str(tmp_path / "built"))
    assert built.returncode == 0, built.stderr
    _publish(hub_server, store)
    hub.pull(REPO, tmp_path / "pulled", endpoint=hub_server.url, token=TOKEN)
    folder = snapshot_download(REPO, repo_type="dataset", endpoint=hub_server.url, local_dir=tmp_path / "dl")
    for kind in (RunRecord, MeasurementRow, SampleRow):
        expected = stored.table(kind).to_pylist()
        for source in (tmp_path / "built", folder):
            loaded = datasets.load_dataset(str(source), kind.table, split="train", cache_dir=str(tmp_path / "cache"))
            assert loaded.to_list() == expected
    assert load(tmp_path / "pulled") == stored


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.3"])
def test_a_store_from_an_earlier_schema_publishes_pulls_and_reports(hub_server, tmp_path, version):
    store = synthetic_store(tmp_path / "store")
    as_written_by(store, version)
    _publish(hub_server, store)
    hub.pull(REPO, tmp_path / "pulled", endpoint=hub_server.url, token=TOKEN)
    pulled, stored = load(tmp_path / "pulled"), load(store.root)
    assert [m.value for m in pulled.measurements] == [m.value for m in stored.measurements]
    assert [r.label for r in pulled.runs] == [r.label for r in stored.runs]
    assert {m.in_phase for m in pulled.measurements} == {"evaluate"}
    report = run_cli("report", "--results", str(tmp_path / "pulled"))
    assert report.returncode == 0, report.stderr
    assert "prune-magnitude(sparsity=0.9)" in report.stdout and "Peak RSS (MiB)" in report.stdout
