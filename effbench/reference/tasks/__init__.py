"""Bundled offline lm-eval tasks of the micro world (see ``micro_world/README.md``)."""

from pathlib import Path

TASKS_DIR = Path(__file__).parent / "micro_world"
GROUP = "micro_world"
# The harder variants keep the reference models below the ceiling, so a technique's damage shows.
HARD_TASK_NAMES = ("micro_copy_long", "micro_add3", "micro_recall_long", "micro_agree2")
TASK_NAMES = ("micro_copy", "micro_add", "micro_recall", "micro_agree", "micro_text", *HARD_TASK_NAMES)

# Chance level of each accuracy task's primary metric (10 digits for recall, 2 verb forms for agree).
CHANCE = {
    "micro_copy": 0.0,
    "micro_add": 0.0,
    "micro_recall": 0.1,
    "micro_agree": 0.5,
    "micro_copy_long": 0.0,
    "micro_add3": 0.0,
    "micro_recall_long": 0.1,
    "micro_agree2": 0.5,
}
PRIMARY_METRIC = {
    "micro_copy": "exact_match",
    "micro_add": "exact_match",
    "micro_recall": "acc",
    "micro_agree": "acc",
    "micro_text": "word_perplexity",
    "micro_copy_long": "exact_match",
    "micro_add3": "exact_match",
    "micro_recall_long": "acc",
    "micro_agree2": "acc",
}
