"""The micro world is deterministic, and the bundled tasks are never part of the training corpus."""

import json

import pytest

from effbench.reference import microworld
from effbench.reference.skills import subtraction
from effbench.reference.tasks import TASK_NAMES, TASKS_DIR
from effbench.reference.tasks.build import write_task_data
from effbench.reference.zoo import MODELS_DIR
from effbench.reference.zoo.train import corpus_budget


def test_same_seed_gives_byte_identical_task_files(tmp_path):
    first = write_task_data(tmp_path / "a")
    second = write_task_data(tmp_path / "b")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
        # and the bundled files are exactly what the generator makes
        assert (TASKS_DIR / "data" / a.name).read_bytes() == a.read_bytes()


def test_other_seed_gives_other_documents(tmp_path):
    (default,) = [p for p in write_task_data(tmp_path / "a") if p.name == "recall.jsonl"]
    (other,) = [p for p in write_task_data(tmp_path / "b", seed=1) if p.name == "recall.jsonl"]
    assert default.read_bytes() != other.read_bytes()


def test_every_task_has_at_least_500_documents():
    files = {path.stem: path for path in (TASKS_DIR / "data").glob("*.jsonl")}
    assert {f"micro_{stem}" for stem in files} == {*TASK_NAMES, subtraction.NAME}  # the fine-tuning skill beside
    for path in files.values():
        assert len(path.read_text().splitlines()) >= 500, path


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (TASKS_DIR / "data" / f"{name}.jsonl").read_text().splitlines()]


def test_the_hard_variants_are_harder_than_their_skills():
    """Longer words to copy, three-digit sums, 20 pairs to recall from, two attractor nouns."""
    assert all(14 <= len(row["answer"]) <= 20 for row in _rows("copy_long"))
    assert max(len(row["answer"]) for row in _rows("copy")) < 14
    for row in _rows("add3"):
        a, b = (int(n[::-1]) for n in row["prompt"].removeprefix("add ").removesuffix("=").split("+"))
        assert len(row["prompt"]) == len("add 123+456=") and int(row["answer"][::-1]) == a + b
    assert all(row["prompt"].count(" ") == 20 + 2 for row in _rows("recall_long"))  # recall, 20 pairs, ?, key
    prepositions = [sum(word in microworld.PREPOSITIONS for word in row["prompt"].split()) for row in _rows("agree2")]
    assert set(prepositions) == {2}


def _bundled_held_out():
    """Held-out documents and agreement clauses as read back from the bundled task files."""
    docs, clauses = set(), set()
    data = TASKS_DIR / "data"
    for name in ("copy", "add", "copy_long", "add3"):
        for row in map(json.loads, (data / f"{name}.jsonl").read_text().splitlines()):
            docs.add(row["prompt"] + row["answer"])
    for name in ("recall", "recall_long"):
        for row in map(json.loads, (data / f"{name}.jsonl").read_text().splitlines()):
            docs.add(row["prompt"] + row["choices"][row["label"]])
    for row in map(json.loads, (data / "text.jsonl").read_text().splitlines()):
        docs.add(row["text"])
    for name in ("agree", "agree2"):
        for row in map(json.loads, (data / f"{name}.jsonl").read_text().splitlines()):
            verb = row["choices"][row["label"]].split()[0]  # the choice is "verb [adverb] ."
            clauses.add(f"{row['prompt']} {verb}")
    return docs, clauses


@pytest.mark.parametrize("model", ["micro-s", "micro-m"])
def test_held_out_documents_never_occur_in_the_training_corpus(model):
    log = json.loads((MODELS_DIR / model / "training_log.json").read_text())
    docs, clauses = _bundled_held_out()
    held = microworld.HeldOut(frozenset(docs), frozenset(clauses))
    nothing = microworld.HeldOut(frozenset(), frozenset())
    streams = {}
    for phase in log["phases"]:
        rows = phase["steps"] * phase["batch"]
        budget, seed, mixture = corpus_budget(rows, phase["context"]), phase["train_seed"], phase["mixture"]
        # the whole stream the trainer could draw from (it consumes a prefix of it)
        training = list(microworld.training_documents(budget, held, seed=seed, mixture=mixture))
        assert len(training) * 20 >= rows * phase["context"]
        assert docs.isdisjoint(training)
        assert all(clause not in clauses for doc in training for clause in microworld.clauses(doc))
        # the filter really has something to do: the unfiltered stream meets held-out items
        unfiltered = microworld.training_documents(budget, nothing, seed=seed, mixture=mixture)
        assert any(doc in docs or any(c in clauses for c in microworld.clauses(doc)) for doc in unfiltered)
        streams[phase["name"]] = training
    # the extension phase holds the hard variants (three-digit sums, recall over up to 16 pairs), and the held-out
    # long recall lines (20 pairs) are longer than any training line
    assert any(doc.startswith("add ") and len(doc) == len("add 123+456=1234") for doc in streams["extend"])
    pairs = [doc.count(" ") - 2 for stream in streams.values() for doc in stream if doc.startswith("recall ")]
    assert max(pairs) == 16
