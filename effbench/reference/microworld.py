"""The synthetic "micro world": skills a tiny model can learn and efficiency techniques visibly affect.

Every skill has one unambiguous line format, so skills do not fight each other:

- ``copy``:   ``copy qwert > qwert``            sequence copying (attention to earlier positions)
- ``add``:    ``add 35+96=221``                 two-digit addition, digits least-significant first (53+69=122)
- ``recall``: ``recall b7 k3 q1 m5 ? k3``      key-value recall over the context (induction)
- ``text``:   sentences of a small probabilistic grammar with subject-verb agreement

Each skill also has a harder held-out variant that the reference models learn only in part, so
damage by an efficiency technique is visible and micro-s differs from micro-m: ``copy`` of 14–20
letters, three-digit ``add``, ``recall`` over 20 pairs (4 more than the longest training line),
agreement across two attractor nouns.

The training corpus and the held-out task documents come from different seeds, and the
training generator drops any document that is also a held-out document, so evaluation
never measures memorisation of the test set.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

LETTERS = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
PUNCTUATION = " .=+?>\n"
ALPHABET = LETTERS + DIGITS + PUNCTUATION

TRAIN_SEED = 1234
TASK_SEED = 98765
RECALL_PAIRS = 4
LONG_RECALL_PAIRS = 16  # the longest recall line of the training data
EXTRA_RECALL_PAIRS = 4  # the held-out long recall lines are longer still: 20 pairs
LONG_COPY_LETTERS = (14, 20)
RECALL_KEYS = "".join(c for c in LETTERS if c not in "recall")

NOUNS = [
    ("dog", "dogs"),
    ("cat", "cats"),
    ("bird", "birds"),
    ("fox", "foxes"),
    ("girl", "girls"),
    ("boy", "boys"),
    ("king", "kings"),
    ("tree", "trees"),
    ("fish", "fishes"),
    ("horse", "horses"),
    ("frog", "frogs"),
    ("wolf", "wolves"),
]
ADJECTIVES = ["old", "small", "red", "big", "happy", "green", "quiet", "fast", "sad", "wild"]
PREPOSITIONS = ["near", "behind", "with", "under", "beside"]
VERBS = [
    ("runs", "run"),
    ("sleeps", "sleep"),
    ("sings", "sing"),
    ("jumps", "jump"),
    ("eats", "eat"),
    ("swims", "swim"),
    ("waits", "wait"),
    ("plays", "play"),
]
ADVERBS = ["today", "again", "slowly", "often", "here", "now"]


@dataclass(frozen=True)
class AgreementItem:
    """A sentence prefix whose next word must agree in number with the head noun."""

    prefix: str
    correct: str
    wrong: str
    rest: str


def _letters(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(low, high)))


def _lsb(number: int, width: int) -> str:
    """Write a number with its least-significant digit first, zero-padded to width."""
    return str(number).zfill(width)[::-1]


def copy_doc(rng: random.Random, letters: tuple[int, int] = (5, 8)) -> tuple[str, str]:
    """Return (prompt, answer) for the copy skill."""
    word = _letters(rng, *letters)
    return f"copy {word} > ", word


def long_copy_doc(rng: random.Random) -> tuple[str, str]:
    """Copy a word of 14–20 letters: repeated letters make one-step induction ambiguous."""
    return copy_doc(rng, LONG_COPY_LETTERS)


def add_doc(rng: random.Random, digits: int = 2) -> tuple[str, str]:
    """Return (prompt, answer) for addition of ``digits``-digit numbers written least-significant digit first."""
    top = 10**digits - 1
    a, b = rng.randint(0, top), rng.randint(0, top)
    return f"add {_lsb(a, digits)}+{_lsb(b, digits)}=", _lsb(a + b, digits + 1)


def add3_doc(rng: random.Random) -> tuple[str, str]:
    """Three-digit addition: one more carry to propagate than the two-digit skill."""
    return add_doc(rng, digits=3)


def recall_doc(rng: random.Random, pairs: int = RECALL_PAIRS) -> tuple[str, str]:
    """Return (prompt, answer) for recalling the digit that follows a key earlier in the line.

    The value directly follows its key, so recall is one induction step (find the key, copy
    the next token); keys avoid the letters of "recall" so the key occurs once before the query.
    """
    keys = rng.sample(RECALL_KEYS, pairs)
    values = [rng.choice(DIGITS) for _ in keys]
    bindings = " ".join(f"{k}{v}" for k, v in zip(keys, values, strict=True))
    probe = rng.randrange(pairs)
    return f"recall {bindings} ? {keys[probe]}", values[probe]


def _noun_phrase(rng: random.Random, plural: bool, adjective_p: float) -> str:
    noun = NOUNS[rng.randrange(len(NOUNS))][int(plural)]
    determiner = "the" if plural or rng.random() < 0.6 else "a"
    if rng.random() < adjective_p:
        return f"{determiner} {rng.choice(ADJECTIVES)} {noun}"
    return f"{determiner} {noun}"


def long_recall_doc(rng: random.Random) -> tuple[str, str]:
    """Recall over 16 key-digit pairs: a longer context with more distractors."""
    return recall_doc(rng, pairs=LONG_RECALL_PAIRS)


def with_distractors(prompt: str, rng: random.Random, extra: int = EXTRA_RECALL_PAIRS) -> str:
    """Insert ``extra`` pairs with unused keys at random places: recall beyond the longest trained line."""
    bindings, _, probe = prompt.partition(" ? ")
    pairs = bindings.split()[1:]
    used = {pair[0] for pair in pairs}
    for key in rng.sample([k for k in RECALL_KEYS if k not in used], extra):
        pairs.insert(rng.randrange(len(pairs) + 1), key + rng.choice(DIGITS))
    return f"recall {' '.join(pairs)} ? {probe}"


def agreement_item(rng: random.Random, attractor_p: float = 0.6, attractors: int = 1) -> AgreementItem:
    """A subject (optionally with ``attractors`` prepositional attractor nouns) followed by its verb."""
    plural = rng.random() < 0.5
    subject = _noun_phrase(rng, plural, adjective_p=0.5)
    if rng.random() < attractor_p:
        for _ in range(attractors):
            attractor = _noun_phrase(rng, rng.random() < 0.5, adjective_p=0.3)
            subject = f"{subject} {rng.choice(PREPOSITIONS)} {attractor}"
    singular_verb, plural_verb = VERBS[rng.randrange(len(VERBS))]
    correct, wrong = (plural_verb, singular_verb) if plural else (singular_verb, plural_verb)
    rest = f" {rng.choice(ADVERBS)} ." if rng.random() < 0.5 else " ."
    return AgreementItem(prefix=subject, correct=correct, wrong=wrong, rest=rest)


def sentence(rng: random.Random) -> str:
    """One grammatical sentence of the micro-world grammar."""
    item = agreement_item(rng, attractor_p=0.4)
    return f"{item.prefix} {item.correct}{item.rest}"


def paragraph(rng: random.Random, sentences: tuple[int, int] = (2, 4)) -> str:
    """A few sentences: the documents the perplexity task scores."""
    return " ".join(sentence(rng) for _ in range(rng.randint(*sentences)))


def two_attractor_sentence(rng: random.Random) -> str:
    """A sentence whose subject carries two attractor nouns (the training side of the hard agreement task)."""
    item = agreement_item(rng, attractor_p=1.0, attractors=2)
    return f"{item.prefix} {item.correct}{item.rest}"


@dataclass(frozen=True)
class HeldOut:
    """Held-out task documents, as the full strings that must never be trained on."""

    docs: frozenset[str]
    clauses: frozenset[str]  # "subject verb" of agreement items, whatever follows the verb


def task_documents(n: int = 500, seed: int = TASK_SEED) -> tuple[dict[str, list[dict]], HeldOut]:
    """Generate the held-out documents of every bundled task, plus the set to exclude from training."""
    rng = random.Random(seed)
    tasks: dict[str, list[dict]] = {}
    held_docs: set[str] = set()
    held_clauses: set[str] = set()

    def unique(make, key):
        seen: set[str] = set()
        while len(seen) < n:
            item = make(rng)
            if key(item) not in seen:
                seen.add(key(item))
                yield item

    def generated(make: Callable[[random.Random], tuple[str, str]]) -> list[dict]:
        """A generate_until task's (prompt, answer) documents, each held out of the training corpus."""
        rows = []
        for prompt, answer in unique(make, lambda pa: pa[0]):
            rows.append({"prompt": prompt, "answer": answer})
            held_docs.add(prompt + answer)
        return rows

    for name, make in (("copy", copy_doc), ("add", add_doc)):
        tasks[name] = generated(make)

    rows = []
    for prompt, answer in unique(recall_doc, lambda pa: pa[0]):
        rows.append({"prompt": prompt, "choices": list(DIGITS), "label": DIGITS.index(answer)})
        held_docs.add(prompt + answer)
    tasks["recall"] = rows

    tasks["agree"] = agreement_rows(
        unique(lambda r: agreement_item(r, attractor_p=1.0), lambda it: it.prefix), rng, held_clauses
    )

    rows = []
    for text in unique(paragraph, lambda p: p):
        rows.append({"text": text})
        held_docs.add(text)
    tasks["text"] = rows

    # The harder variants come after the original tasks from the same generator, so the original
    # tasks' documents stay byte-identical to the earlier releases.
    for name, make in (("copy_long", long_copy_doc), ("add3", add3_doc)):
        tasks[name] = generated(make)

    rows = []
    # The extra distractors come from a generator of their own, so the documents drawn after these stay the same.
    distractors = random.Random(f"{seed}/recall_long")
    for prompt, answer in unique(long_recall_doc, lambda pa: pa[0]):
        prompt = with_distractors(prompt, distractors)
        rows.append({"prompt": prompt, "choices": list(DIGITS), "label": DIGITS.index(answer)})
        held_docs.add(prompt + answer)
    tasks["recall_long"] = rows

    tasks["agree2"] = agreement_rows(
        unique(lambda r: agreement_item(r, attractor_p=1.0, attractors=2), lambda it: it.prefix), rng, held_clauses
    )
    return tasks, HeldOut(frozenset(held_docs), frozenset(held_clauses))


def agreement_rows(items: Iterator[AgreementItem], rng: random.Random, held_clauses: set[str]) -> list[dict]:
    """Two-choice rows (correct verb at a random position) and the clauses to keep out of training.

    Each choice carries the rest of the sentence: "run" alone is a prefix of "runs", and a prefix
    always has the higher likelihood, which would make raw acc meaningless.
    """
    rows = []
    for item in items:
        label = rng.randrange(2)
        correct, wrong = item.correct + item.rest, item.wrong + item.rest
        choices = [wrong, correct] if label else [correct, wrong]
        rows.append({"prompt": item.prefix, "choices": choices, "label": label})
        held_clauses.add(f"{item.prefix} {item.correct}")
    return rows


# Training mixtures. Pre-training (short rows): copy and recall share one induction circuit (copy
# forms it first); addition is the slowest skill to learn, so it gets the largest share.
BASE_MIXTURE = {"recall": 0.30, "add": 0.35, "copy": 0.12, "text": 0.23}
# Context extension (long rows): the same skills plus the harder variants, a fifth of the documents
# together, so the models learn them only in part.
MIXTURE = {
    "recall": 0.24,
    "add": 0.27,
    "copy": 0.10,
    "text": 0.19,
    "recall_long": 0.06,
    "add3": 0.08,
    "copy_long": 0.03,
    "agree2": 0.03,
}
GRAMMAR_SKILLS = ("text", "agree2")  # documents whose clauses must not be held-out agreement clauses


def _training_doc(rng: random.Random, skill: str) -> str:
    if skill == "text":
        return paragraph(rng, sentences=(1, 4))
    if skill == "agree2":
        return two_attractor_sentence(rng)
    if skill == "recall":
        prompt, answer = recall_doc(rng, pairs=rng.randint(2, 6))
    elif skill == "recall_long":
        prompt, answer = recall_doc(rng, pairs=rng.randint(7, LONG_RECALL_PAIRS))
    elif skill == "copy_long":
        prompt, answer = copy_doc(rng, (9, LONG_COPY_LETTERS[1]))
    else:
        prompt, answer = {"add": add_doc, "add3": add3_doc, "copy": copy_doc}[skill](rng)
    return prompt + answer


def training_documents(
    count: int | None, held_out: HeldOut, seed: int = TRAIN_SEED, mixture: dict[str, float] = MIXTURE
) -> Iterator[str]:
    """Yield ``count`` (None: endless) training documents (one line each) drawn by ``mixture``, never a held-out one."""
    rng = random.Random(seed)
    skills, weights = zip(*mixture.items(), strict=True)
    produced = 0
    while count is None or produced < count:
        skill = rng.choices(skills, weights)[0]
        doc = _training_doc(rng, skill)
        if doc in held_out.docs or (skill in GRAMMAR_SKILLS and any(c in held_out.clauses for c in clauses(doc))):
            continue
        produced += 1
        yield doc


def clauses(text: str) -> list[str]:
    """The "subject verb" part of every sentence of a paragraph (adverb and full stop removed)."""
    out = []
    for part in text.split(" ."):
        words = part.split()
        if words and words[-1] in ADVERBS:
            words = words[:-1]
        if words:
            out.append(" ".join(words))
    return out


# Bundled training data for distillation: the induction skills (copy, recall, and their long variants), which
# micro-m has learnt and micro-s only in part; drawn from a seed of its own, never the zoo's (1234, 1235) or the tasks'.
INDUCTION = "micro_induction"
INDUCTION_MIXTURE = {"copy": 0.25, "copy_long": 0.25, "recall": 0.25, "recall_long": 0.25}
INDUCTION_SEED = TRAIN_SEED + 100


def induction_examples(seed: int) -> Iterator[dict[str, str]]:
    """An endless stream of ``{"text": line}`` examples of the induction skills, never a held-out document."""
    _, held_out = task_documents()
    lines = training_documents(None, held_out, seed=INDUCTION_SEED + seed, mixture=INDUCTION_MIXTURE)
    return ({"text": line} for line in lines)
