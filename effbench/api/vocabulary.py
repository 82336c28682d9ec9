"""The words effbench sorts things by: lifecycle stages, resources, metric scopes."""

from __future__ import annotations

SCOPES = ("run", "scenario", "repeat")
STAGES = ("architecture", "pretraining", "finetuning", "inference", "system")
RESOURCES = ("computation", "memory", "energy", "money", "network")
QUALITY = "quality"
ONE_OFF_PHASES = ("apply", "train")  # a run's own one-off costs, not the deployed model's
GENERATE = "generate"  # lm-eval's generative requests during the accuracy phase: energy per correct answer
PHASES = (*ONE_OFF_PHASES, GENERATE)  # phases a repeat-scope metric may also measure, besides the load scenarios
