"""How much effbench's instruments slow down what they measure.

The same fixed workload (micro-m, single stream, 32 prompt + 32 output tokens) is timed bare
(plain generate calls) and under effbench's full instrumentation (every registered metric:
codecarbon's sampling thread, the first-token streamer, memory and network counters), in
alternating order within one process. Target: instrumented / bare <= 1.02.
Run: python benchmarks/measurement_overhead.py [--rounds 16] [--requests 20]
"""

import statistics
import time

from bare_loop import OUTPUT_TOKENS, PROMPT_TOKENS, alternate, load, run_cli, timed_requests

from effbench.api.context import RunContext
from effbench.config.suite import Scenario
from effbench.measure.windows import Instruments
from effbench.plugins import registry
from effbench.run.pipeline import measure_scenario


def main(rounds: int, requests: int) -> None:
    model, tokenizer = load()
    scenario = Scenario(
        min_requests=requests, repeats=1, warmup=0, prompt_tokens=PROMPT_TOKENS, output_tokens=OUTPUT_TOKENS
    )
    settings = {"country": "USA", "idle_seconds": 0, "price": None, "prompt_tokens": PROMPT_TOKENS}
    metrics = [m for m in registry().metrics.values() if m.scope != "run"]
    timed_requests(model, tokenizer, 3)  # warm up allocator and kernels
    with_start_stop = []

    def instrumented_round() -> float:
        ctx = RunContext(model=model, tokenizer=tokenizer, technique="baseline", params={}, settings=settings)
        started = time.perf_counter()
        measure_scenario(ctx, scenario, Instruments(metrics))
        with_start_stop.append(time.perf_counter() - started)
        return ctx.workload_seconds

    bare, instrumented = alternate(rounds, lambda: sum(timed_requests(model, tokenizer, requests)), instrumented_round)
    b, w, s = (statistics.median(x) for x in (bare, instrumented, with_start_stop))
    ratios = sorted(i / j for i, j in zip(instrumented, bare, strict=True))  # paired: same round, drift cancels
    print(f"instruments: {', '.join(m.name for m in metrics)}")
    print(f"bare workload ({requests} requests, median of {rounds}): {b:.3f} s")
    print(f"instrumented workload (median of {rounds}): {w:.3f} s")
    print(f"instrumented / bare, median of per-round ratios: {statistics.median(ratios):.4f}  (target <= 1.02)")
    print(f"  per-round ratios range {ratios[0]:.3f} .. {ratios[-1]:.3f} (the machine's own noise)")
    print(f"instruments' start + stop, once per repeat: {s - w:.3f} s")


if __name__ == "__main__":
    run_cli(main, __doc__)
