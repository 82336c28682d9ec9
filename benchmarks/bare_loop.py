"""The independent reference for the measurement benchmarks: plain ``generate`` calls timed with perf_counter."""

import argparse
import time
from collections.abc import Callable

import torch

from effbench.measure.scenarios import prompts
from effbench.reference import zoo

PROMPT_TOKENS = OUTPUT_TOKENS = 32


def load(threads: int = 1):
    """micro-m on one thread: the machine is shared, and one thread keeps side-by-side timings comparable."""
    torch.set_num_threads(threads)
    return zoo.load("zoo:micro-m")


def timed_requests(model, tokenizer, count: int, seed: int = 0) -> list[float]:
    """Seconds per request for the same prompts effbench's scenario serves with this seed, without effbench."""
    pad = tokenizer.pad_token_id
    latencies = []
    with torch.inference_mode():
        for ids in prompts(tokenizer, count, PROMPT_TOKENS, seed):
            input_ids = torch.tensor([ids])
            started = time.perf_counter()
            model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=OUTPUT_TOKENS,
                min_new_tokens=OUTPUT_TOKENS,
                do_sample=False,
                pad_token_id=pad,
            )
            latencies.append(time.perf_counter() - started)
    return latencies


def alternate(rounds: int, first: Callable[[], float], second: Callable[[], float]) -> tuple[list, list]:
    """Each side once per round, the order swapped every round, so drift of the shared machine hits both."""
    results: tuple[list, list] = ([], [])
    for i in range(rounds):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            results[side].append((first, second)[side]())
    return results


def run_cli(main: Callable[[int, int], None], doc: str) -> None:
    """Both measurement benchmarks take the same knobs: alternating rounds, and requests per round."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16, help="alternating rounds of each side")
    parser.add_argument("--requests", type=int, default=20, help="requests per round")
    main(**vars(parser.parse_args()))
