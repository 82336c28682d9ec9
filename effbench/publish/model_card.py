"""Write the reference models' cards from training logs and lm-eval (``python -m effbench.publish.model_card``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from effbench.measure import accuracy
from effbench.plugins import registry
from effbench.reference.tasks import CHANCE, GROUP, PRIMARY_METRIC
from effbench.reference.zoo import MODELS_DIR, load


def score(name: str, limit: int | None = None) -> tuple[dict[str, dict[str, Any]], float]:
    """lm-eval results of the whole bundled group for ``zoo:name``, and the seconds the evaluation took."""
    model, tokenizer = load(f"zoo:{name}")
    started = time.perf_counter()
    results, _ = accuracy.evaluate(
        model,
        tokenizer,
        [GROUP],
        task_dirs=tuple(str(d) for d in registry().task_dirs),
        limit=limit,
        batch_size=64,
        bootstrap_iters=1000,
    )
    return results, time.perf_counter() - started


def _cell(result: dict[str, Any], metric: str) -> str:
    value = result[f"{metric},none"]
    stderr = result.get(f"{metric}_stderr,none")
    return f"{value:.3f} ± {stderr:.3f}" if isinstance(stderr, float) else f"{value:.3f}"


def comparison_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown table: task, metric, micro-s, micro-m, chance."""
    lines = ["| task | metric | micro-s | micro-m | chance |", "|---|---|---|---|---|"]
    extra = [("micro_recall", "acc_norm"), ("micro_agree", "acc_norm"), ("micro_text", "bits_per_byte")]
    for task, metric in [*PRIMARY_METRIC.items(), *extra]:
        chance = f"{CHANCE[task]:.2f}" if task in CHANCE else "–"
        small, medium = (_cell(results[name][task], metric) for name in ("micro-s", "micro-m"))
        lines.append(f"| {task} | {metric} | {small} | {medium} | {chance} |")
    return "\n".join(lines)


CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: text-generation
tags: [effbench, reference-model, synthetic]
---

# {name}

A tiny reference model of [effbench](https://github.com/effbench/effbench), trained from
scratch on effbench's synthetic "micro world" so that efficiency techniques can be
evaluated offline on any CPU. Not a general-purpose language model.

- Architecture: `LlamaForCausalLM`, hidden {hidden}, {layers} layers, {heads} attention heads,
  {kv_heads} key-value heads (grouped-query attention), MLP {intermediate}, context {context},
  tied embeddings; **{parameters:,} parameters**.
- Tokenizer: character level, {vocab} tokens (`<pad>`, `<eos>` = BOS = EOS, `<unk>`, a–z, 0–9, ` .=+?>` and newline),
  shared by micro-m and micro-s (so micro-s can be micro-m's draft model and student).
- Data: skills `copy`, `add` (two-digit, digits least-significant first), `recall` (2–6 key=digit pairs)
  and grammar `text`, mixed {mixture}; documents packed into rows of {context} tokens separated by `<eos>`.
  Generated with seed {train_seed}; the evaluation documents use seed {task_seed} and are removed from the
  training stream.
- Training: {steps} steps × {tokens_per_step:,} tokens, AdamW (lr {lr}, betas 0.9/0.95, weight decay 0.01,
  {warmup} warm-up steps, cosine to 10 %), gradient clipping 1.0, seed {seed}, {torch_threads} CPU thread(s);
  **final loss {final_loss:.4f}** (mean of the last 50 steps), **{minutes:.1f} minutes** on this machine.
  Reproduce with `python -m effbench.reference.zoo.train {name} --out DIR`; `training_log.json` has the loss curve.

## Accuracy on the bundled `micro_world` tasks (lm-eval, 500 documents each, ± standard error)

{table}

Chance: micro_recall picks one of 10 digits, micro_agree one of 2 verb forms;
exact-match tasks have no meaningful chance level.
"""


def write_card(name: str, table: str) -> Path:
    """Render README.md for one model from its training log and the shared accuracy table."""
    folder = MODELS_DIR / name
    log = json.loads((folder / "training_log.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    recipe = log["recipe"]
    facts = {**recipe, **{k: v for k, v in log.items() if k not in ("recipe", "loss_curve", "mixture")}}
    text = CARD.format(
        name=name,
        vocab=config["vocab_size"],
        context=config["max_position_embeddings"],
        mixture=", ".join(f"{k} {v:.0%}" for k, v in log["mixture"].items()),
        minutes=log["seconds"] / 60,
        table=table,
        **facts,
    )
    path = folder / "README.md"
    path.write_text(text)
    return path


def main() -> None:
    results = {}
    for name in ("micro-s", "micro-m"):
        results[name], seconds = score(name)
        print(f"{name}: micro_world evaluated in {seconds:.1f} s")
    table = comparison_table(results)
    print(table)
    for name in results:
        print(write_card(name, table))


if __name__ == "__main__":
    main()
