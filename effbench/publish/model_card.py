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
    extra = [
        ("micro_recall", "acc_norm"),
        ("micro_agree", "acc_norm"),
        ("micro_recall_long", "acc_norm"),
        ("micro_agree2", "acc_norm"),
        ("micro_text", "bits_per_byte"),
    ]
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
- Data: skills `copy` (5–8 letters), `add` (two-digit, digits least-significant first), `recall` (2–6 key=digit
  pairs) and grammar `text`, and their harder variants `copy_long` (9–20 letters), `add3` (three-digit),
  `recall_long` (7–16 pairs) and `agree2` (sentences with two attractor nouns); documents packed into rows
  separated by `<eos>`. The evaluation documents use seed {task_seed} and are removed from the training stream.
- Training, AdamW (betas 0.9/0.95, weight decay 0.01, linear warm-up then cosine to 10 %), gradient clipping 1.0,
  seed {seed}, {torch_threads} CPU thread(s), in two phases as large models are trained:
{phases}
  **Final loss {final_loss:.4f}** (mean of the last 50 steps), **{minutes:.1f} minutes** on this machine in all
  (wall clock; on a machine busy with other jobs a phase takes longer than its CPU-minutes ÷ threads).
  Reproduce with `python -m effbench.reference.zoo.train {name} --out DIR` (both phases), or extend a pre-trained
  checkpoint with `--pretrained DIR`; `training_log.json` has every phase's loss curve.

## Accuracy on the bundled `micro_world` tasks (lm-eval, 500 documents each, ± standard error)

{table}

Chance: micro_recall and micro_recall_long pick one of 10 digits, micro_agree and micro_agree2 one of
2 verb forms; exact-match tasks have no meaningful chance level. The last four tasks are the harder
variants (14–20 letters to copy, three-digit addition, 20 key=digit pairs where training had at most 16,
two attractor nouns), on which the models are meant to sit below the ceiling, so a technique's damage shows.
"""


def _phase_line(phase: dict[str, Any]) -> str:
    """One bullet of the card: what a training phase saw, for how long, and what it cost."""
    mixture = ", ".join(f"{skill} {share:.0%}" for skill, share in phase["mixture"].items())
    cpu = f", {phase['cpu_seconds'] / 60:.1f} CPU-minutes" if phase.get("cpu_seconds") else ""
    source = " (reused from the pre-trained checkpoint's log)" if phase.get("reused_from") else ""
    return (
        f"  - *{phase['name']}*: {phase['steps']} steps × {phase['tokens_per_step']:,} tokens in rows of "
        f"{phase['context']} tokens, lr {phase['lr']}, {phase['warmup']} warm-up steps, documents of seed "
        f"{phase['train_seed']} mixed {mixture}; loss {phase['final_loss']:.4f}, "
        f"{phase['seconds'] / 60:.1f} minutes{cpu}{source}."
    )


def write_card(name: str, table: str) -> Path:
    """Render README.md for one model from its training log and the shared accuracy table."""
    folder = MODELS_DIR / name
    log = json.loads((folder / "training_log.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    recipe = {k: v for k, v in log["recipe"].items() if k != "phases"}
    facts = {**recipe, **{k: v for k, v in log.items() if k not in ("recipe", "phases", "context")}}
    text = CARD.format(
        name=name,
        vocab=config["vocab_size"],
        context=config["max_position_embeddings"],
        phases="\n".join(_phase_line(phase) for phase in log["phases"]),
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
