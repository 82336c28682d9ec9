"""Does effbench report the latency a user would measure by hand?

effbench's reported mean latency (single-stream scenario on micro-m) next to an independent
time.perf_counter loop over the very same prompts in the same process, alternating rounds.
Target: within 3 %.
Run: python benchmarks/latency_fidelity.py [--rounds 16] [--requests 20]
"""

import statistics

from bare_loop import OUTPUT_TOKENS, PROMPT_TOKENS, alternate, load, run_cli, timed_requests

from effbench.api.context import RunContext
from effbench.config.suite import Scenario
from effbench.default_plugins.metrics.load import Latency
from effbench.measure.windows import Instruments
from effbench.run.pipeline import measure_scenario


def main(rounds: int, requests: int) -> None:
    model, tokenizer = load()
    scenario = Scenario(
        min_requests=requests, repeats=1, warmup=0, prompt_tokens=PROMPT_TOKENS, output_tokens=OUTPUT_TOKENS
    )
    timed_requests(model, tokenizer, 3)

    def effbench_round() -> float:
        ctx = RunContext(model=model, tokenizer=tokenizer, technique="baseline", params={}, settings={})
        mean = next(m for m in measure_scenario(ctx, scenario, Instruments([Latency()])) if m.metric == "latency")
        return mean.value / 1000

    reported, independent = alternate(
        rounds, effbench_round, lambda: statistics.fmean(timed_requests(model, tokenizer, requests, seed=scenario.seed))
    )
    r, b = statistics.fmean(reported), statistics.fmean(independent)
    ratios = sorted(x / y for x, y in zip(reported, independent, strict=True))
    print(f"effbench mean latency ({requests} requests x {rounds} rounds): {r * 1000:.2f} ms")
    print(f"independent perf_counter loop, same prompts: {b * 1000:.2f} ms")
    print(f"difference: {100 * (r / b - 1):+.2f} %  (target within ±3 %)")
    print(f"  per-round differences range {100 * (ratios[0] - 1):+.1f} % .. {100 * (ratios[-1] - 1):+.1f} %")


if __name__ == "__main__":
    run_cli(main, __doc__)
