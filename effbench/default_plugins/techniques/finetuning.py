"""Full fine-tuning and knowledge distillation: every weight trained, the baselines parameter-efficient methods save on.

``distill`` trains every weight of the run's model (the student) like ``finetune-full``, on a loss that
also matches a teacher's softened next-token distributions (``effbench.train.distill``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from effbench.api.technique import Technique
from effbench.api.training import Distillation
from effbench.errors import EffbenchError
from effbench.hookspecs import hookimpl
from effbench.modeling import check_same_tokenizer
from effbench.reference import zoo

LearningRate = Annotated[float, Field(gt=0, le=1)]
DEFAULT_TEACHER = "zoo:micro-m"


class FinetuneFull(Technique):
    """Train every parameter of the model on the suite's training data and budget."""

    name = "finetune-full"
    stage = "finetuning"
    phase = "train"
    resources = ("computation", "memory", "energy", "money")
    description = "Full fine-tuning (AdamW on every weight): the fine-tuning baseline PEFT methods are compared with."
    references = ("https://arxiv.org/abs/1801.06146",)

    def apply(self, model: Any, tokenizer: Any, *, lr: LearningRate = 1e-3) -> Any:
        return model.requires_grad_(True)

    def training_options(self, model: Any, tokenizer: Any, *, lr: float) -> dict[str, Any]:
        return {"learning_rate": lr}


def _check_vocabulary(teacher: str, teacher_size: int, student_size: int) -> None:
    """Raise ValueError unless both models score the same vocabulary: the KL compares their logits token by token."""
    if teacher_size != student_size:
        raise ValueError(
            f"parameter 'teacher': {teacher!r} scores {teacher_size} tokens, the student {student_size} "
            "(vocab_size); a teacher must share the student's tokenizer and vocabulary exactly"
        )


class Distill(Technique):
    """Logit knowledge distillation: the student learns the labels and the teacher's softened distributions."""

    name = "distill"
    stage = "finetuning"
    phase = "train"
    resources = ("computation", "memory", "energy", "money")
    description = (
        "Knowledge distillation: every weight of the student trained on alpha · T² · KL(teacher ‖ student) "
        "+ (1 − alpha) · cross-entropy; the teacher's load and forward passes are part of the train phase."
    )
    references = ("https://arxiv.org/abs/1503.02531",)

    def preflight(self, config: Any, *, teacher: str, **_: Any) -> None:
        from transformers import AutoTokenizer

        check_same_tokenizer("teacher", teacher, AutoTokenizer.from_pretrained(config.name_or_path))
        try:
            teacher_config = zoo.config(teacher)
        except EffbenchError as err:
            raise ValueError(f"parameter 'teacher': {err}") from None
        _check_vocabulary(teacher, teacher_config.vocab_size, config.vocab_size)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        teacher: Annotated[str, Field(min_length=1, description="teacher model: zoo:NAME, Hub id or directory")] = (
            DEFAULT_TEACHER
        ),
        temperature: Annotated[float, Field(gt=0)] = 2.0,
        alpha: Annotated[float, Field(ge=0, le=1)] = 0.5,
        lr: LearningRate = 1e-3,
    ) -> Any:
        check_same_tokenizer("teacher", teacher, tokenizer)
        return model.requires_grad_(True)

    def training_options(
        self, model: Any, tokenizer: Any, *, teacher: str, temperature: float, alpha: float, lr: float
    ) -> dict[str, Any]:
        """Load the teacher here, inside the train phase's window: its cost is the training run's."""
        device = next(model.parameters()).device
        loaded, _ = zoo.load(teacher, device=str(device), dtype=model.dtype)
        try:
            _check_vocabulary(teacher, loaded.config.vocab_size, model.config.vocab_size)
        except ValueError as err:
            raise EffbenchError(str(err)) from None
        return {"learning_rate": lr, "distillation": Distillation(loaded.requires_grad_(False), temperature, alpha)}


@hookimpl
def register_techniques(register):
    register(FinetuneFull())
    register(Distill())
