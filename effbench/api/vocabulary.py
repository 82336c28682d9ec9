"""The words effbench sorts things by: lifecycle stages, resources, metric scopes."""

from __future__ import annotations

SCOPES = ("run", "scenario", "repeat")
STAGES = ("architecture", "pretraining", "finetuning", "inference", "system")
RESOURCES = ("computation", "memory", "energy", "money", "network")
QUALITY = "quality"
PHASES = ("apply", "train")  # one-off phases a repeat-scope metric may also measure
