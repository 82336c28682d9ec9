"""Logit knowledge distillation (Hinton et al. 2015): the student also learns the teacher's softened distributions.

loss = alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · cross-entropy, the KL
averaged over the positions the cross-entropy scores (the completion's tokens, never prompt or padding).
"""

from __future__ import annotations

from typing import Any

from effbench.api.training import Distillation


def kd_term(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float) -> Any:
    """T² · the mean over scored next-token positions of KL(teacher ‖ student), both softened by ``temperature``."""
    import torch.nn.functional as F

    scored = labels[:, 1:] >= 0  # a token id: the loop labels unscored positions -100; position i predicts i + 1
    student = F.log_softmax(student_logits[:, :-1][scored].float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits[:, :-1][scored].float() / temperature, dim=-1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1)
    return temperature**2 * kl.mean()


def step_loss(model: Any, batch: dict[str, Any], distillation: Distillation | None) -> Any:
    """The loss of one batch: the model's cross-entropy, mixed with the KD term when a teacher is given."""
    import torch

    out = model(**batch)
    if distillation is None:
        return out.loss
    with torch.no_grad():
        teacher = distillation.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    kd = kd_term(out.logits, teacher, batch["labels"], distillation.temperature)
    return distillation.alpha * kd + (1 - distillation.alpha) * out.loss
