"""The bounded training loop a run's training techniques shaped: AdamW on the trainable parameters, step by step.

Every step's loss is kept (the loss curve); the first step runs under torch's FLOP counter, so
the run's FLOPs are counted on the real model (adapters, frozen layers and all), not estimated.
"""

from __future__ import annotations

import itertools
import math
import random
import tempfile
from pathlib import Path
from typing import Any

from effbench.api.training import TrainingOptions, TrainingRun
from effbench.errors import EffbenchError
from effbench.measure.device import peak_flops
from effbench.train.data import examples
from effbench.train.distributed import Parallel

IGNORED = -100  # the label of positions the loss does not count (prompt, padding)
WARMUP_SHARE = 0.1  # the learning rate rises linearly over the first tenth of the budget


def seed_everything(seed: int) -> None:
    """Seed torch and Python before the training techniques act: new weights (adapters) start the same each run."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def encode(tokenizer: Any, row: dict[str, str], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels of one example: the prompt's positions are not scored, the example ends with <eos>."""
    prompt = tokenizer(row.get("prompt", ""), add_special_tokens=False)["input_ids"]
    target = tokenizer(row.get("completion", row.get("text", "")), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        target = [*target, tokenizer.eos_token_id]
    ids = (prompt + target)[:max_length]
    labels = ([IGNORED] * len(prompt) + target)[:max_length]
    return ids, labels


def collate(tokenizer: Any, rows: list[dict[str, str]], max_length: int, device: str) -> dict[str, Any]:
    """A right-padded batch with an attention mask; padding is not scored."""
    import torch

    encoded = [encode(tokenizer, row, max_length) for row in rows]
    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [i + [pad] * (width - len(i)) for i, _ in encoded]
    labels = [lab + [IGNORED] * (width - len(lab)) for _, lab in encoded]
    mask = [[1] * len(i) + [0] * (width - len(i)) for i, _ in encoded]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "labels": torch.tensor(labels, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }


def parameter_count(parameter: Any) -> int:
    """Values a parameter holds: a packed 4-bit weight (bitsandbytes' ``quant_state``) counts its unpacked shape."""
    state = getattr(parameter, "quant_state", None)
    return math.prod(state.shape) if state is not None else parameter.numel()


def checkpoint_bytes(trainable: dict[str, Any]) -> int:
    """Bytes of the trained parameters saved as safetensors: what must be shipped to reproduce the trained model."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trained.safetensors"
        save_file({name: p.detach().contiguous().cpu() for name, p in trainable.items()}, str(path))
        return path.stat().st_size


def learning_rate(step: int, budget_steps: int | None, peak: float) -> float:
    """Linear warm-up over the first tenth of a step budget (the first 10 steps of a token budget), then constant."""
    warmup = max(1, round((budget_steps or 100) * WARMUP_SHARE))
    return peak * min(1.0, (step + 1) / warmup)


def train(
    model: Any,
    tokenizer: Any,
    settings: dict[str, Any],
    options: TrainingOptions,
    device: str,
    dtype: str,
    parallel: Parallel | None = None,
) -> TrainingRun:
    """Train ``model``'s trainable parameters within the budget of ``settings`` (the suite's ``training``).

    With ``parallel`` this process is one rank of a distributed training: it trains on its share of
    every batch, through DDP, and its ``TrainingRun`` counts its own examples.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise EffbenchError("the stack's training techniques left no parameter trainable")
    peak, no_peak = peak_flops(device, dtype)
    run = TrainingRun(
        trainable_parameters=sum(p.numel() for p in trainable.values()),
        total_parameters=sum(parameter_count(p) for p in model.parameters()),
        target_loss=settings.get("target_loss"),
        peak_flops_per_s=peak,
        no_peak_reason=no_peak,
    )
    optimizer = torch.optim.AdamW(trainable.values(), lr=options.learning_rate, weight_decay=0.0)
    if parallel is not None:
        model, optimizer = parallel.prepare(model, optimizer, options.communication)
    stream = examples(settings["data"], settings["seed"])
    steps, tokens = settings.get("steps"), settings.get("tokens")
    flops_per_position = 0.0
    model.train()
    for step in itertools.count():
        if (steps is not None and step >= steps) or (tokens is not None and run.tokens >= tokens):
            break
        rows = list(itertools.islice(stream, settings["batch_size"]))
        batch = collate(tokenizer, parallel.shard(rows) if parallel else rows, settings["max_length"], device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, options.learning_rate)
        if step == 0:
            with FlopCounterMode(display=False) as counter:
                loss = model(**batch).loss
                loss.backward()
            flops_per_position = counter.get_total_flops() / batch["input_ids"].numel()
        else:
            loss = model(**batch).loss
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable.values(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        run.losses.append(loss.item())
        run.tokens += int((batch["labels"][:, 1:] != IGNORED).sum())  # the causal shift: the first label is unscored
        run.computed_tokens += batch["input_ids"].numel()
    model.eval()
    run.flops = flops_per_position * run.computed_tokens or None
    run.checkpoint_bytes = checkpoint_bytes(trainable)
    return run
