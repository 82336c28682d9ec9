"""The bounded training loop a run's training techniques shaped: the chosen optimizer on the trainable parameters.

Every step's loss and end time are kept (the loss curve, the time to a target loss); the first
step runs under torch's FLOP counter, so the run's FLOPs are counted on the real model (adapters,
frozen layers and all), not estimated.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from effbench.api.training import TrainingOptions, TrainingRun
from effbench.errors import EffbenchError
from effbench.measure.device import device_type, peak_flops
from effbench.train import optim
from effbench.train.data import examples
from effbench.train.distill import step_loss
from effbench.train.distributed import Parallel, Prepared

IGNORED = -100  # the label of positions the loss does not count (prompt, padding)
WARMUP_SHARE = 0.1  # the learning rate rises linearly over the first tenth of the budget
Encoded = tuple[list[int], list[int]]  # one row's token ids and labels


def seed_everything(seed: int) -> None:
    """Seed torch and Python before the training techniques act: new weights (adapters) start the same each run."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def encode(tokenizer: Any, row: dict[str, str], max_length: int) -> Encoded:
    """Token ids and labels of one example: the prompt's positions are not scored, the example ends with <eos>."""
    prompt = tokenizer(row.get("prompt", ""), add_special_tokens=False)["input_ids"]
    target = tokenizer(row.get("completion", row.get("text", "")), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        target = [*target, tokenizer.eos_token_id]
    ids = (prompt + target)[:max_length]
    labels = ([IGNORED] * len(prompt) + target)[:max_length]
    return ids, labels


def padded(tokenizer: Any, encoded: list[Encoded], device: str) -> dict[str, Any]:
    """A right-padded batch with an attention mask; padding is not scored."""
    import torch

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


def collate(tokenizer: Any, rows: list[dict[str, str]], max_length: int, device: str) -> dict[str, Any]:
    """One example per row, right-padded to the longest."""
    return padded(tokenizer, [encode(tokenizer, row, max_length) for row in rows], device)


def packed_rows(tokenizer: Any, stream: Iterator[dict[str, str]], length: int) -> Iterator[Encoded]:
    """Rows of exactly ``length`` tokens: examples back to back, each closed by <eos>, cut across rows; no padding."""
    ids: list[int] = []
    labels: list[int] = []
    for row in stream:
        more_ids, more_labels = encode(tokenizer, row, length)
        ids += more_ids
        labels += more_labels
        while len(ids) >= length:
            yield ids[:length], labels[:length]
            ids, labels = ids[length:], labels[length:]


def batches(
    tokenizer: Any,
    settings: dict[str, Any],
    packing: bool,
    device: str,
    shard: Callable[[list[Any]], list[Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Endless batches of the training data: padded examples, or (packing) full rows of concatenated examples.

    ``shard`` picks a distributed rank's share of every global batch (of examples, or of packed rows).
    """
    stream = examples(settings["data"], settings["seed"])
    size, length = settings["batch_size"], settings["max_length"]
    mine = shard or (lambda rows: rows)
    if packing:
        rows = packed_rows(tokenizer, stream, length)
        while True:
            yield padded(tokenizer, mine(list(itertools.islice(rows, size))), device)
    while True:
        yield collate(tokenizer, mine(list(itertools.islice(stream, size))), length, device)


def precision(options: TrainingOptions, device: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision: ``torch.autocast`` to the options' dtype (mixed precision), else as loaded."""
    import torch

    if options.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type(device), dtype=getattr(torch, options.autocast_dtype))


def forward_backward(model: Any, batch: dict[str, Any], options: TrainingOptions, device: str) -> Any:
    """One batch's loss, its gradients accumulated: forward and loss in the run's precision, backward outside it."""
    with precision(options, device):
        loss = step_loss(model, batch, options.distillation)
    loss.backward()
    return loss


def parameter_count(parameter: Any) -> int:
    """Values a parameter holds: a packed 4-bit weight (bitsandbytes' ``quant_state``) counts its unpacked shape."""
    state = getattr(parameter, "quant_state", None)
    return math.prod(state.shape) if state is not None else parameter.numel()


def trainable(model: Any) -> list[Any]:
    """The parameters the loop updates (those with requires_grad), in the model's order."""
    return [p for p in model.parameters() if p.requires_grad]


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


@contextlib.contextmanager
def checkpointing(model: Any, enabled: bool) -> Iterator[None]:
    """Activations recomputed in backward instead of kept (non-reentrant checkpoints) while the loop trains."""
    if not enabled:
        yield
        return
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the name from transformers 5.x on
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        disable = model.activation_checkpointing_disable
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        disable = model.gradient_checkpointing_disable
    try:
        yield
    finally:
        disable()


def train(
    model: Any,
    tokenizer: Any,
    settings: dict[str, Any],
    options: TrainingOptions,
    device: str,
    dtype: str,
    parallel: Parallel | None = None,
) -> tuple[Any, TrainingRun]:
    """Train ``model``'s trainable parameters within the budget of ``settings`` (the suite's ``training``).

    With ``parallel`` this process is one rank of a distributed training: it trains on its share of
    every batch, through DDP or FSDP, and its ``TrainingRun`` counts its own examples. Returns the trained
    model (under FSDP a new one, its shards gathered whole) and the run.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if not trainable(model):
        raise EffbenchError("the stack's training techniques left no parameter trainable")
    peak, no_peak = peak_flops(device, dtype)
    run = TrainingRun(
        trainable_parameters=sum(p.numel() for p in trainable(model)),
        total_parameters=sum(parameter_count(p) for p in model.parameters()),
        target_loss=settings.get("target_loss"),
        peak_flops_per_s=peak,
        no_peak_reason=no_peak,
    )
    # no name here keeps the parameters: FSDP replaces them with its shards, and the whole ones must be freed
    optimizer = optim.build(options.optimizer, trainable(model), options.learning_rate)
    loaded = model  # checkpointing is switched on the model itself, not on its DDP wrapper
    prepared = (
        parallel.prepare(model, optimizer, options.communication)
        if parallel is not None
        else Prepared(model, optimizer, lambda: loaded)
    )
    model, optimizer = prepared.model, prepared.optimizer
    clipped = trainable(model)  # under FSDP, its shards
    data = batches(tokenizer, settings, options.packing, device, parallel.shard if parallel else None)
    steps, tokens = settings.get("steps"), settings.get("tokens")
    flops_per_position = 0.0
    model.train()
    began = time.perf_counter()
    with checkpointing(loaded, options.gradient_checkpointing):
        for step in itertools.count():
            if (steps is not None and step >= steps) or (tokens is not None and run.tokens >= tokens):
                break
            batch = next(data)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, steps, options.learning_rate)
            if step == 0:
                with FlopCounterMode(display=False) as counter:
                    loss = forward_backward(model, batch, options, device)
                flops_per_position = counter.get_total_flops() / batch["input_ids"].numel()
            else:
                loss = forward_backward(model, batch, options, device)
            torch.nn.utils.clip_grad_norm_(clipped, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            run.losses.append(loss.item())  # waits for the device: the step's end time below is its real end
            run.step_ends.append(time.perf_counter() - began)
            run.tokens += int((batch["labels"][:, 1:] != IGNORED).sum())  # the causal shift: first label unscored
            run.computed_tokens += batch["input_ids"].numel()
    model.eval()
    run.flops = flops_per_position * run.computed_tokens or None
    run.optimizer_state_bytes = optim.state_bytes(optimizer)
    model = prepared.trained()
    run.checkpoint_bytes = checkpoint_bytes({name: p for name, p in model.named_parameters() if p.requires_grad})
    return model, run
