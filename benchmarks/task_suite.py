"""How long lm-eval takes for the whole bundled micro_world group, and how the reference models score.

Target: micro-m's full group in <= 60 s on a 2-core CPU.  Run: python benchmarks/task_suite.py
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from effbench.publish.model_card import comparison_table, score


def main() -> None:
    results = {}
    for name in ("micro-m", "micro-s"):
        results[name], seconds = score(name)
        print(f"{name}: lm-eval on micro_world (5 tasks x 500 documents) took {seconds:.1f} s")
    print(comparison_table(results))


if __name__ == "__main__":
    main()
