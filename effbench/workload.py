"""The measured generation workload: greedy requests of forced length, timed one by one."""

from __future__ import annotations

import random
import time
from typing import Any

from effbench import microworld
from effbench.types import Request, RunContext


def prompts(tokenizer: Any, count: int, prompt_tokens: int, seed: int = 0) -> list[list[int]]:
    """Deterministic prompts of exactly ``prompt_tokens`` tokens, made of micro-world sentences."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        ids: list[int] = []
        while len(ids) < prompt_tokens:
            ids.extend(tokenizer(microworld.sentence(rng) + " ", add_special_tokens=False)["input_ids"])
        out.append(ids[:prompt_tokens])
    return out


def run(ctx: RunContext, *, requests: int, prompt_tokens: int, max_new_tokens: int, warmup: int) -> None:
    """Generate ``warmup`` unmeasured then ``requests`` measured requests, recording each in ``ctx``."""
    import torch

    model, tokenizer = ctx.model, ctx.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    settings = {
        **ctx.generate_kwargs,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": max_new_tokens,
        "do_sample": False,
        "pad_token_id": pad,
    }
    all_prompts = prompts(tokenizer, warmup + requests, prompt_tokens)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for i, ids in enumerate(all_prompts):
            input_ids = torch.tensor([ids], device=device)
            started = time.perf_counter()
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **settings)
            elapsed = time.perf_counter() - started
            if i >= warmup:
                ctx.requests.append(Request(len(ids), output.shape[1] - len(ids), elapsed))
    ctx.workload_seconds = sum(r.latency_s for r in ctx.requests)
