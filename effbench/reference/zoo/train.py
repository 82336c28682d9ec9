"""Deterministic training of the bundled reference micro-models (``python -m effbench.reference.zoo.train``).

Both models are standard ``LlamaForCausalLM`` with grouped-query attention and share one
character-level tokenizer, so micro-s can serve as draft model and student of micro-m.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from effbench.reference import microworld

SPECIAL_TOKENS = ["<pad>", "<eos>", "<unk>"]
CONTEXT = 128


@dataclass(frozen=True)
class Recipe:
    """Architecture and optimisation of one reference model."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    steps: int
    lr: float
    batch: int = 64
    warmup: int = 100
    seed: int = 0
    threads: int = 2  # CPU threads; micro-s uses one: its matrices are too small to gain from two


RECIPES = {
    "micro-m": Recipe(hidden=160, layers=4, heads=4, kv_heads=2, intermediate=448, steps=2800, lr=2e-3),
    "micro-s": Recipe(hidden=64, layers=3, heads=4, kv_heads=2, intermediate=192, steps=2400, lr=3e-3, threads=1),
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


def corpus_budget(rows: int) -> int:
    """How many documents the generator may produce for ``rows`` rows (rows use a prefix of them)."""
    return rows * CONTEXT // 20


def training_rows(tokenizer: PreTrainedTokenizerFast, rows: int, seed: int) -> torch.Tensor:
    """Rows of CONTEXT+1 tokens; each row starts at a document, documents are separated by <eos>."""
    _, held_out = microworld.task_documents()
    docs = microworld.training_documents(corpus_budget(rows), held_out, seed=seed)
    eos = tokenizer.eos_token_id
    out = torch.empty(rows, CONTEXT + 1, dtype=torch.long)
    row: list[int] = []
    filled = 0
    for doc in docs:
        ids = tokenizer(doc + "\n")["input_ids"]
        row.extend(ids if not row else [eos, *ids])
        if len(row) >= CONTEXT + 1:
            out[filled] = torch.tensor(row[: CONTEXT + 1])
            filled += 1
            row = []
            if filled == rows:
                return out
    raise RuntimeError("training corpus too small for the requested rows")


def lr_at(step: int, recipe: Recipe) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak rate."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def probe_accuracy(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, n: int = 64) -> dict:
    """Greedy accuracy per skill on fresh examples (a third seed): a progress signal while training."""
    rng = random.Random(555)
    scores = {}
    for name, make in (("copy", microworld.copy_doc), ("add", microworld.add_doc), ("recall", microworld.recall_doc)):
        pairs = [make(rng) for _ in range(n)]
        hits = 0
        for prompt, answer in pairs:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            out = model.generate(ids, max_new_tokens=len(answer), do_sample=False, pad_token_id=tokenizer.pad_token_id)
            hits += tokenizer.decode(out[0, ids.shape[1] :]) == answer
        scores[name] = hits / n
    return scores


def train(name: str, out: Path, steps: int | None = None, log_every: int = 50, probe_every: int = 0) -> list[float]:
    """Train one reference model from scratch and save it; returns the loss curve."""
    recipe = RECIPES[name]
    steps = steps if steps is not None else recipe.steps
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    tokenizer = build_tokenizer()
    model = LlamaForCausalLM(model_config(recipe, tokenizer))
    data = training_rows(tokenizer, steps * recipe.batch, seed=microworld.TRAIN_SEED + recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=0.01)
    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        batch = data[step * recipe.batch : (step + 1) * recipe.batch]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe)
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            print(f"{name} step {step + 1}/{steps} loss {recent:.4f} {time.perf_counter() - started:.0f}s", flush=True)
        if probe_every and (step + 1) % probe_every == 0:
            model.eval()
            print(f"{name} step {step + 1} probe {probe_accuracy(model, tokenizer)}", flush=True)
            model.train()
    elapsed = time.perf_counter() - started
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(tokenizer, out)
    log = {
        "recipe": asdict(recipe),
        "steps": steps,
        "tokens_per_step": recipe.batch * CONTEXT,
        "train_seed": microworld.TRAIN_SEED + recipe.seed,
        "task_seed": microworld.TASK_SEED,
        "mixture": microworld.MIXTURE,
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "seconds": round(elapsed, 1),
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "loss_curve": [round(x, 5) for x in losses],
    }
    (out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--probe-every", type=int, default=0)
    args = parser.parse_args()
    train(args.name, args.out, steps=args.steps, probe_every=args.probe_every)


if __name__ == "__main__":
    main()
