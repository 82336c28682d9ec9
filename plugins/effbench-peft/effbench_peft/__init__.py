"""Parameter-efficient fine-tuning for effbench through peft: LoRA, DoRA, QLoRA and IA3 train small added weights.

Each technique acts in the run's train phase: ``apply`` wraps the model with peft (the base weights
frozen), the run trains the added weights on the suite's training data and budget, and
``after_training`` merges them into the base weights, so the evaluated model (and any inference
technique stacked after it) is a plain transformers model. peft is imported inside the hooks only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field

from effbench import EffbenchError, Technique, hookimpl
from effbench.modeling import linear_layers

Modules = list[str] | str  # module names (a layer matches when its name ends with one), or peft's "all-linear"
LearningRate = Annotated[float, Field(gt=0, le=1)]


def linear_modules(config: Any) -> dict[str, Any]:
    """The model's linear layers by full name, from a weightless copy on the meta device (nothing is loaded)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    output = model.get_output_embeddings()
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not output}


def targeted(config: Any, targets: Modules) -> dict[str, Any]:
    """The linear layers ``targets`` names, as peft matches them; an unknown name is an error listing the valid ones."""
    layers = linear_modules(config)
    if not layers:
        raise ValueError(
            f"{config.model_type} has no torch Linear layer to adapt (its layers are GPT-2-style Conv1D, "
            "which effbench-peft does not adapt yet): use finetune-full"
        )
    if targets == "all-linear":
        return layers
    names = targets.split() if isinstance(targets, str) else list(targets)
    if not names:
        raise ValueError("target_modules is empty; name the layers to adapt, or 'all-linear'")
    short = sorted({name.rsplit(".", 1)[-1] for name in layers})
    missing = [t for t in names if not any(n == t or n.endswith(f".{t}") for n in layers)]
    if missing:
        raise ValueError(
            f"target modules {', '.join(map(repr, missing))} are not linear layers of {config.model_type}; "
            f"its linear layers: {', '.join(short)} (or 'all-linear')"
        )
    return {n: m for n, m in layers.items() if any(n == t or n.endswith(f".{t}") for t in names)}


def peft_targets(targets: Modules) -> list[str] | str:
    """``target_modules`` as peft takes it."""
    return targets if targets == "all-linear" else (targets.split() if isinstance(targets, str) else list(targets))


class PeftTechnique(Technique):
    """A peft method: subclasses build its config; the adapter is trained, then merged into the base weights."""

    stage = "finetuning"
    phase = "train"
    imports = ("peft",)  # before the train window: loading peft is not LoRA's training memory
    resources = ("memory", "computation", "energy", "money")

    def peft_config(self, **params: Any) -> Any:
        """The peft config to wrap the model with."""
        raise NotImplementedError

    def apply(self, model: Any, tokenizer: Any, **params: Any) -> Any:
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config(**params))

    def training_options(self, model: Any, tokenizer: Any, *, lr: float, **_: Any) -> dict[str, Any]:
        return {"learning_rate": lr}

    def after_training(self, model: Any, tokenizer: Any, **params: Any) -> Any:
        """The base model with the trained adapter merged in: no adapter overhead at inference."""
        return model.merge_and_unload()


class Lora(PeftTechnique):
    """Low-rank adapters: W + (alpha / r) · B A on the target layers, only A and B trained."""

    name = "lora"
    description = "LoRA: trains rank-r update matrices beside frozen weights, then merges them (peft)."
    references = ("https://arxiv.org/abs/2106.09685",)
    use_dora = False

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        r: Annotated[int, Field(ge=1)] = 8,
        alpha: Annotated[float, Field(gt=0)] = 16.0,
        target_modules: Modules = "q_proj v_proj",
        lr: LearningRate = 5e-3,
    ) -> Any:
        return super().apply(model, tokenizer, r=r, alpha=alpha, target_modules=target_modules)

    def preflight(self, config: Any, *, r: int, target_modules: Modules, **_: Any) -> None:
        for name, layer in targeted(config, target_modules).items():
            width = min(layer.in_features, layer.out_features)
            if r > width:
                raise ValueError(f"rank r={r} is above the width {width} of layer {name}: choose r <= {width}")

    def peft_config(self, *, r: int, alpha: float, target_modules: Modules) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=r,
            lora_alpha=alpha,
            target_modules=peft_targets(target_modules),
            lora_dropout=0.0,
            use_dora=self.use_dora,
            task_type="CAUSAL_LM",
        )


class Dora(Lora):
    """Weight-decomposed LoRA: a trained magnitude per output row, LoRA on the direction."""

    name = "dora"
    description = "DoRA: LoRA on the weights' direction plus a trained magnitude vector, then merged (peft)."
    references = ("https://arxiv.org/abs/2402.09353",)
    use_dora = True


def quantize_4bit(model: Any, quant_type: str) -> Any:
    """Replace the decoder blocks' linear layers by bitsandbytes 4-bit ones (frozen), as QLoRA's base; on any device."""
    import bitsandbytes as bnb

    layers = linear_layers(model)
    if not layers:
        raise EffbenchError(f"{type(model).__name__}'s decoder blocks hold no linear layer to quantize")
    for name, layer in layers:
        quantized = bnb.nn.Linear4bit(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            compute_dtype=layer.weight.dtype,
            quant_type=quant_type,
            device="meta",
        )
        quantized.weight = bnb.nn.Params4bit(layer.weight.data.cpu(), requires_grad=False, quant_type=quant_type)
        if layer.bias is not None:
            quantized.bias = layer.bias
        if layer.in_features % quantized.weight.blocksize:  # bitsandbytes 0.50's packed CPU inference kernel
            quantized.support_avx512bf16_for_cpu = False  # assumes whole blocks per row; the generic path does not
        model.set_submodule(name, quantized.to(layer.weight.device))  # moving a Params4bit quantizes it
    model.is_loaded_in_4bit = True  # as transformers marks a model it loaded in 4 bits: peft then wraps bnb layers
    return model


class Qlora(Lora):
    """LoRA on a 4-bit base: the frozen linear layers stored in NF4 (bitsandbytes), the adapters in full precision."""

    name = "qlora"
    description = "QLoRA: LoRA adapters trained over a 4-bit NF4 base (bitsandbytes), merged into the 4-bit weights."
    references = ("https://arxiv.org/abs/2305.14314",)
    imports = ("peft", "bitsandbytes")

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        r: Annotated[int, Field(ge=1)] = 8,
        alpha: Annotated[float, Field(gt=0)] = 16.0,
        target_modules: Modules = "q_proj v_proj",
        lr: LearningRate = 5e-3,
        quant_type: Literal["nf4", "fp4"] = "nf4",
    ) -> Any:
        quantize_4bit(model, quant_type)
        return PeftTechnique.apply(self, model, tokenizer, r=r, alpha=alpha, target_modules=target_modules)


class Ia3(PeftTechnique):
    """(IA)3: learned vectors rescaling the keys, values and feed-forward activations; nothing else is trained."""

    name = "ia3"
    description = "IA3: trains one scaling vector per targeted layer (keys, values, MLP), then merges them (peft)."
    references = ("https://arxiv.org/abs/2205.05638",)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        target_modules: Modules = "k_proj v_proj down_proj",
        feedforward_modules: Modules = "down_proj",
        lr: LearningRate = 1e-2,
    ) -> Any:
        return super().apply(model, tokenizer, target_modules=target_modules, feedforward_modules=feedforward_modules)

    def preflight(self, config: Any, *, target_modules: Modules, feedforward_modules: Modules, **_: Any) -> None:
        adapted = targeted(config, target_modules)
        outside = sorted(set(targeted(config, feedforward_modules)) - set(adapted))
        if outside:
            raise ValueError(f"feedforward_modules must be among target_modules; {outside[0]} is not")

    def peft_config(self, *, target_modules: Modules, feedforward_modules: Modules) -> Any:
        from peft import IA3Config

        return IA3Config(
            target_modules=peft_targets(target_modules),
            feedforward_modules=peft_targets(feedforward_modules),
            task_type="CAUSAL_LM",
        )


@hookimpl
def register_techniques(register: Callable[[Technique], None]) -> None:
    for technique in (Lora(), Dora(), Qlora(), Ia3()):
        register(technique)
