"""The measured load: greedy, forced-length requests served under a scenario, timed one by one."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from effbench.api.context import Request, RunContext
from effbench.config.suite import Scenario
from effbench.measure.accuracy import ONE_SEQUENCE_AT_A_TIME
from effbench.measure.device import synchronize
from effbench.reference import microworld


def prompt_stream(tokenizer: Any, prompt_tokens: int, seed: int) -> Iterator[list[int]]:
    """Endless deterministic prompts of exactly ``prompt_tokens`` tokens, made of micro-world sentences."""
    rng = random.Random(seed)
    while True:
        ids: list[int] = []
        while len(ids) < prompt_tokens:
            ids.extend(tokenizer(microworld.sentence(rng) + " ", add_special_tokens=False)["input_ids"])
        yield ids[:prompt_tokens]


def prompts(tokenizer: Any, count: int, prompt_tokens: int, seed: int = 0) -> list[list[int]]:
    """The first ``count`` prompts of the stream."""
    stream = prompt_stream(tokenizer, prompt_tokens, seed)
    return [next(stream) for _ in range(count)]


def poisson_arrivals(rate: float, seed: int) -> Iterator[float]:
    """Arrival times (s) of a Poisson process: exponential gaps with mean ``1 / rate``."""
    rng = random.Random(seed)
    now = 0.0
    while True:
        now += rng.expovariate(rate)
        yield now


class FirstToken:
    """A generate() streamer that notes when the first new token leaves the model (the prompt comes first)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.calls = 0
        self.at: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            synchronize(self.device)  # the token exists once the device has computed it, not when it was queued
            self.at = time.perf_counter()

    def end(self) -> None:
        """Nothing to flush."""


class Generator:
    """Runs one batch of equal-length prompts through ``generate`` with the technique's arguments."""

    def __init__(self, ctx: RunContext, output_tokens: int) -> None:
        tokenizer = ctx.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.model = ctx.model
        self.settings = {
            **ctx.generate_kwargs,
            "max_new_tokens": output_tokens,
            "min_new_tokens": output_tokens,
            "do_sample": False,
            "pad_token_id": pad,
        }
        # draft models and prompt lookup only work one sequence at a time: a batch is then served row by row
        self.row_by_row = bool(ONE_SEQUENCE_AT_A_TIME & set(ctx.generate_kwargs))
        self.device = next(ctx.model.parameters()).device  # the first layer's, for a model spread by device_map

    def __call__(self, batch: list[list[int]]) -> tuple[list[int], float | None, float]:
        """Generate for ``batch``; return new tokens per row, first-token time and finish time (perf_counter)."""
        import torch

        rows = [[ids] for ids in batch] if self.row_by_row else [batch]
        new_tokens: list[int] = []
        first: float | None = None
        with torch.inference_mode():
            for group in rows:
                input_ids = torch.tensor(group, device=self.device)
                streamer = FirstToken(self.device)
                output = self.model.generate(
                    input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer, **self.settings
                )
                first = first or streamer.at
                new_tokens += [output.shape[1] - input_ids.shape[1]] * len(group)
        synchronize(self.device)
        return new_tokens, first, time.perf_counter()


def warm_up(ctx: RunContext, scenario: Scenario) -> None:
    """Serve ``warmup`` unmeasured batches (allocator, caches, lazy initialisation) before the first repeat."""
    generate = Generator(ctx, scenario.output_tokens)
    stream = prompt_stream(ctx.tokenizer, scenario.prompt_tokens, scenario.seed - 1)
    for _ in range(scenario.warmup):
        generate([next(stream) for _ in range(scenario.batch_size)])


def run_repeat(ctx: RunContext, scenario: Scenario, repeat: int) -> tuple[list[Request], float]:
    """Serve one repeat of ``scenario``; return its requests and its wall-clock seconds.

    Every repeat serves the same prompts at the same arrival times, so the spread between
    repeats (their CV) is the machine's, not the luck of a random workload.
    """
    generate = Generator(ctx, scenario.output_tokens)
    stream = prompt_stream(ctx.tokenizer, scenario.prompt_tokens, scenario.seed)
    serve = _serve_server if scenario.kind == "server" else _serve_batches
    start = time.perf_counter()
    requests = serve(generate, stream, scenario, repeat, start)
    return requests, time.perf_counter() - start


def _enough(scenario: Scenario, served: int, elapsed: float) -> bool:
    return served >= scenario.min_requests and elapsed >= scenario.min_duration_s


def _serve_batches(
    generate: Generator, stream: Iterator[list[int]], scenario: Scenario, repeat: int, start: float
) -> list[Request]:
    """single-stream and fixed-batch: a batch starts when the last ends; offline: all wait from the start."""
    requests: list[Request] = []
    while not _enough(scenario, len(requests), time.perf_counter() - start):
        batch = [next(stream) for _ in range(scenario.batch_size)]
        began = start if scenario.kind == "offline" else time.perf_counter()
        issued = time.perf_counter()
        new_tokens, first, finished = generate(batch)
        for ids, new in zip(batch, new_tokens, strict=True):
            ttft = None if first is None else first - began
            requests.append(Request(len(ids), new, finished - began, ttft, issued - began, repeat))
    return requests


def _serve_server(
    generate: Generator, stream: Iterator[list[int]], scenario: Scenario, repeat: int, start: float
) -> list[Request]:
    """Poisson arrivals queue for one server; each request's clock starts at its arrival."""
    requests: list[Request] = []
    arrivals = poisson_arrivals(scenario.rate, scenario.seed)
    while True:
        arrival = next(arrivals)
        if _enough(scenario, len(requests), arrival):
            break
        arrived = start + arrival
        idle = arrived - time.perf_counter()
        if idle > 0:
            time.sleep(idle)
        ids = next(stream)
        issued = time.perf_counter()
        new_tokens, first, finished = generate([ids])
        ttft = None if first is None else first - arrived
        requests.append(Request(len(ids), new_tokens[0], finished - arrived, ttft, issued - arrived, repeat))
    return requests
