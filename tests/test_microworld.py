"""The micro world is deterministic, and the bundled tasks are never part of the training corpus."""

import json

import pytest

from effbench.reference import microworld
from effbench.reference.tasks import TASKS_DIR
from effbench.reference.tasks.build import write_task_data
from effbench.reference.zoo import MODELS_DIR
from effbench.reference.zoo.train import CONTEXT, corpus_budget


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
    for path in (TASKS_DIR / "data").glob("*.jsonl"):
        assert len(path.read_text().splitlines()) >= 500, path


def _bundled_held_out():
    """Held-out documents and agreement clauses as read back from the bundled task files."""
    docs, clauses = set(), set()
    data = TASKS_DIR / "data"
    for name in ("copy", "add"):
        for row in map(json.loads, (data / f"{name}.jsonl").read_text().splitlines()):
            docs.add(row["prompt"] + row["answer"])
    for row in map(json.loads, (data / "recall.jsonl").read_text().splitlines()):
        docs.add(row["prompt"] + row["choices"][row["label"]])
    for row in map(json.loads, (data / "text.jsonl").read_text().splitlines()):
        docs.add(row["text"])
    for row in map(json.loads, (data / "agree.jsonl").read_text().splitlines()):
        verb = row["choices"][row["label"]].split()[0]  # the choice is "verb [adverb] ."
        clauses.add(f"{row['prompt']} {verb}")
    return docs, clauses


@pytest.mark.parametrize("model", ["micro-s", "micro-m"])
def test_held_out_documents_never_occur_in_the_training_corpus(model):
    log = json.loads((MODELS_DIR / model / "training_log.json").read_text())
    rows = log["steps"] * log["recipe"]["batch"]
    docs, clauses = _bundled_held_out()
    held = microworld.HeldOut(frozenset(docs), frozenset(clauses))
    # the whole stream the trainer could draw from (it consumes a prefix of it)
    training = list(microworld.training_documents(corpus_budget(rows), held, seed=log["train_seed"]))
    assert len(training) * 20 >= rows * CONTEXT
    assert docs.isdisjoint(training)
    assert all(clause not in clauses for doc in training for clause in microworld.clauses(doc))
    # the filter really has something to do: the unfiltered stream meets held-out items
    unfiltered = microworld.training_documents(
        corpus_budget(rows), microworld.HeldOut(frozenset(), frozenset()), seed=log["train_seed"]
    )
    assert any(doc in docs or any(c in clauses for c in microworld.clauses(doc)) for doc in unfiltered)
