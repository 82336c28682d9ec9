"""Deterministic training of the bundled reference micro-models (``python -m effbench.reference.zoo.train``).

Both models are standard ``LlamaForCausalLM`` with grouped-query attention and share one
character-level tokenizer, so micro-s can serve as draft model and student of micro-m.
Training has two phases, as large models have: pre-training on short rows (cheap attention), then
context extension on full-length rows with the harder skill variants mixed in.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from effbench.reference import microworld

SPECIAL_TOKENS = ["<pad>", "<eos>", "<unk>"]
CONTEXT = 512  # lm-eval's own generative tasks ask for 256 new tokens after their prompt
PRETRAIN_CONTEXT = 128


@dataclass(frozen=True)
class Phase:
    """One training phase: rows of ``context`` tokens drawn by ``mixture``, with its own learning-rate schedule."""

    name: str
    context: int
    batch: int  # rows per step
    steps: int
    lr: float
    warmup: int
    mixture: dict[str, float]
    stream: int  # the phase's documents come from seed TRAIN_SEED + recipe seed + stream


@dataclass(frozen=True)
class Recipe:
    """Architecture and optimisation of one reference model."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    phases: tuple[Phase, ...]
    seed: int = 0
    threads: int = 2  # CPU threads; micro-s uses one: its matrices are too small to gain from two


def _phases(pretrain_steps: int, pretrain_lr: float, extend_steps: int, extend_lr: float) -> tuple[Phase, ...]:
    """Pre-training on 128-token rows, then context extension on 512-token rows; 8,192 tokens per step in both."""
    return (
        Phase("pretrain", PRETRAIN_CONTEXT, 64, pretrain_steps, pretrain_lr, 100, microworld.BASE_MIXTURE, 0),
        Phase("extend", CONTEXT, 16, extend_steps, extend_lr, 20, microworld.MIXTURE, 1),
    )


RECIPES = {
    "micro-m": Recipe(
        hidden=160, layers=4, heads=4, kv_heads=2, intermediate=448, phases=_phases(2800, 2e-3, 400, 1e-3)
    ),
    "micro-s": Recipe(
        hidden=64, layers=3, heads=4, kv_heads=2, intermediate=192, phases=_phases(2400, 3e-3, 400, 1.5e-3), threads=1
    ),
}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over the micro-world alphabet, saved as a standard tokenizer.json."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + list(microworld.ALPHABET))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<eos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=CONTEXT,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    """Save so that transformers 4.x loads it too (5.x records the class TokenizersBackend)."""
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def model_config(recipe: Recipe, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """Llama with grouped-query attention, sized by the recipe."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden,
        intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads,
        max_position_embeddings=CONTEXT,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def corpus_budget(rows: int, context: int) -> int:
    """How many documents the generator may produce for ``rows`` rows (rows use a prefix of them)."""
    return rows * context // 20


def training_rows(tokenizer: PreTrainedTokenizerFast, phase: Phase, seed: int) -> torch.Tensor:
    """Rows of context+1 tokens; each row starts at a document, documents are separated by <eos>."""
    _, held_out = microworld.task_documents()
    rows = phase.steps * phase.batch
    docs = microworld.training_documents(corpus_budget(rows, phase.context), held_out, seed=seed, mixture=phase.mixture)
    eos = tokenizer.eos_token_id
    out = torch.empty(rows, phase.context + 1, dtype=torch.long)
    row: list[int] = []
    filled = 0
    for doc in docs:
        ids = tokenizer(doc + "\n")["input_ids"]
        row.extend(ids if not row else [eos, *ids])
        if len(row) >= phase.context + 1:
            out[filled] = torch.tensor(row[: phase.context + 1])
            filled += 1
            row = []
            if filled == rows:
                return out
    raise RuntimeError("training corpus too small for the requested rows")


def lr_at(step: int, phase: Phase) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak rate."""
    if step < phase.warmup:
        return phase.lr * (step + 1) / phase.warmup
    progress = (step - phase.warmup) / max(1, phase.steps - phase.warmup)
    return phase.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def probe_accuracy(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, n: int = 64) -> dict:
    """Greedy accuracy per skill on fresh examples (a third seed): a progress signal while training."""
    rng = random.Random(555)
    scores = {}
    skills = {
        "copy": microworld.copy_doc,
        "add": microworld.add_doc,
        "recall": microworld.recall_doc,
        "copy_long": microworld.long_copy_doc,
        "add3": microworld.add3_doc,
        "recall_long": microworld.long_recall_doc,
    }
    for name, make in skills.items():
        pairs = [make(rng) for _ in range(n)]
        hits = 0
        for prompt, answer in pairs:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            out = model.generate(ids, max_new_tokens=len(answer), do_sample=False, pad_token_id=tokenizer.pad_token_id)
            hits += tokenizer.decode(out[0, ids.shape[1] :]) == answer
        scores[name] = hits / n
    return scores


def _run_phase(
    name: str,
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    phase: Phase,
    seed: int,
    log_every: int,
    probe_every: int,
) -> dict:
    """Train ``model`` in place through one phase and return its record for the training log."""
    data = training_rows(tokenizer, phase, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=phase.lr, betas=(0.9, 0.95), weight_decay=0.01)
    losses: list[float] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    model.train()
    for step in range(phase.steps):
        batch = data[step * phase.batch : (step + 1) * phase.batch]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, phase)
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            elapsed = time.perf_counter() - started
            print(f"{name} {phase.name} step {step + 1}/{phase.steps} loss {recent:.4f} {elapsed:.0f}s", flush=True)
        if probe_every and (step + 1) % probe_every == 0:
            model.eval()
            print(f"{name} {phase.name} step {step + 1} probe {probe_accuracy(model, tokenizer)}", flush=True)
            model.train()
    model.eval()
    return {
        **asdict(phase),
        "train_seed": seed,
        "tokens_per_step": phase.batch * phase.context,
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),  # the machine's share when it is busy
        "loss_curve": [round(x, 5) for x in losses],
    }


def _pretrained_phase(recipe: Recipe, pretrained: Path) -> dict:
    """The pre-training record of a checkpoint trained by the first phase alone (effbench 0.x's bundled models)."""
    log = json.loads((pretrained / "training_log.json").read_text())
    phase = recipe.phases[0]
    expected = {"hidden": recipe.hidden, "layers": recipe.layers, "steps": phase.steps, "lr": phase.lr}
    found = {key: log["recipe"].get(key) for key in expected}
    tokens = phase.batch * phase.context
    if found != expected or log.get("mixture") != phase.mixture or log.get("tokens_per_step") != tokens:
        raise ValueError(f"{pretrained} was not trained by this recipe's {phase.name} phase: {found} != {expected}")
    return {
        **asdict(phase),
        "train_seed": log["train_seed"],
        "tokens_per_step": log["tokens_per_step"],
        "final_loss": log["final_loss"],
        "seconds": log["seconds"],
        "cpu_seconds": None,  # not recorded then
        "loss_curve": log["loss_curve"],
        "reused_from": "the checkpoint's training_log.json",
    }


def train(
    name: str,
    out: Path,
    steps: int | None = None,
    log_every: int = 50,
    probe_every: int = 0,
    pretrained: Path | None = None,
) -> list[float]:
    """Train one reference model from scratch (or extend a pre-trained checkpoint) and save it; returns the losses.

    ``steps`` caps every phase (quick trials); ``pretrained`` skips the first phase and starts from that
    checkpoint's weights.
    """
    recipe = RECIPES[name]
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    tokenizer = build_tokenizer()
    model = LlamaForCausalLM(model_config(recipe, tokenizer))
    records = []
    for index, phase in enumerate(recipe.phases):
        if steps is not None:
            phase = replace(phase, steps=min(steps, phase.steps))
        if index == 0 and pretrained is not None:
            records.append(_pretrained_phase(recipe, pretrained))
            loaded = model.load_state_dict(load_file(pretrained / "model.safetensors"), strict=False)
            if loaded.unexpected_keys or set(loaded.missing_keys) - {"lm_head.weight"}:  # the tied head is stored once
                raise ValueError(f"{pretrained} does not fit {name}: {loaded}")
            model.tie_weights()
            continue
        seed = microworld.TRAIN_SEED + recipe.seed + phase.stream
        records.append(_run_phase(name, model, tokenizer, phase, seed, log_every, probe_every))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(tokenizer, out)
    log = {
        "recipe": asdict(recipe),
        "task_seed": microworld.TASK_SEED,
        "context": CONTEXT,
        "final_loss": records[-1]["final_loss"],
        "seconds": round(sum(r["seconds"] for r in records), 1),
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "phases": records,
    }
    (out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return [loss for record in records for loss in record["loss_curve"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=None, help="cap every phase at this many steps (quick trials)")
    parser.add_argument("--probe-every", type=int, default=0)
    parser.add_argument(
        "--pretrained", type=Path, default=None, help="a checkpoint of the pre-training phase: start from it"
    )
    args = parser.parse_args()
    train(args.name, args.out, steps=args.steps, probe_every=args.probe_every, pretrained=args.pretrained)


if __name__ == "__main__":
    main()
