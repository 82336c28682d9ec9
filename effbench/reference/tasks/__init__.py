"""Bundled offline lm-eval tasks of the micro world (see ``micro_world/README.md``)."""

from pathlib import Path

TASKS_DIR = Path(__file__).parent / "micro_world"
GROUP = "micro_world"
TASK_NAMES = ("micro_copy", "micro_add", "micro_recall", "micro_agree", "micro_text")

# Chance level of each accuracy task's primary metric (10 digits for recall, 2 verb forms for agree).
CHANCE = {"micro_copy": 0.0, "micro_add": 0.0, "micro_recall": 0.1, "micro_agree": 0.5}
PRIMARY_METRIC = {
    "micro_copy": "exact_match",
    "micro_add": "exact_match",
    "micro_recall": "acc",
    "micro_agree": "acc",
    "micro_text": "word_perplexity",
}
