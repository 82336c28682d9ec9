"""Results at scale: `effbench report` and `effbench leaderboard` on 1 M measurement rows over 10 k runs.

Writes a results store in the store's own format (one Parquet file per run in runs/, measurements/ and samples/;
the first run through ``ResultsStore.write_run``, the rest with the same ``to_table`` schema and ``write_parquet``,
without its per-file fsync) into a temporary folder: machines × models × technique configurations (parameter
sweeps and stacks), 1 % of them failed. Each successful run holds the 115 measurements a run of
suites/inference.yaml stores (the names, units, resources, scenarios, phases and methods of the baseline's rows in
leaderboards/inference-suite/report-measurements.csv), its figures drawn around them, and each document's outcome
in its nine tasks (15 sample rows per document), the quality figures computed from those outcomes. Then it times
the two commands as a user runs them: a subprocess of the CLI (`python -m effbench.cli`, imports and plugin loading
included, stdout to a file), twice each: the first read of the store builds its snapshot (README, "Results store
and resume"), the second reads through it.
With --against COMMIT, both commands of this code and of that commit (a git worktree of it, each with its own snapshot
cache) are alternated --repeat times after a first read each, and their medians compared.
Run: python benchmarks/scale.py [--runs 10000] [--docs 20] [--keep DIR [--write-only]] [--against COMMIT [--repeat 3]]
"""

import argparse
import csv
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from effbench.records import MeasurementRow, RunRecord, SampleRow
from effbench.store.results import ResultsStore, write_parquet

TEMPLATE = Path(__file__).parents[1] / "leaderboards" / "inference-suite" / "report-measurements.csv"
MACHINES = {
    "a1b2c3d4e5f60708": ("AMD EPYC 7B13", 2, 24),
    "b2c3d4e5f6070819": ("Intel Xeon Platinum 8375C", 32, 128),
    "c3d4e5f60708192a": ("Apple M2 Pro", 12, 32),
    "d4e5f60708192a3b": ("AMD Ryzen 9 7950X", 32, 64),
}
MODELS = ("zoo:micro-m", "zoo:micro-s", "Qwen/Qwen2.5-0.5B", "HuggingFaceTB/SmolLM2-360M", "EleutherAI/pythia-160m")
# task -> its metrics with (per-document kind): binary outcomes, or log-likelihoods with words / bytes as weights
TASKS = {
    "micro_copy": ("exact_match",),
    "micro_add": ("exact_match",),
    "micro_recall": ("acc", "acc_norm"),
    "micro_agree": ("acc", "acc_norm"),
    "micro_text": ("word_perplexity", "byte_perplexity", "bits_per_byte"),
    "micro_copy_long": ("exact_match",),
    "micro_add3": ("exact_match",),
    "micro_recall_long": ("acc", "acc_norm"),
    "micro_agree2": ("acc", "acc_norm"),
}
GENERATIVE = ("micro_copy", "micro_add", "micro_copy_long", "micro_add3")
STAGES = {"dtype": "inference", "dynamic-int8": "inference", "compile": "system", "static-cache": "system",
          "attention": "architecture", "sliding-window": "architecture"}  # fmt: skip
FAILED_EVERY = 100  # one run in a hundred failed (no measurements, no samples)


def configurations() -> list[list[tuple[str, dict]]]:
    """Technique stacks a lab sweeps: the baseline, parameter grids of every builtin technique, and stacks."""
    one = [("baseline", {}), ("dtype", {"dtype": "bf16"}), ("dtype", {"dtype": "fp16"}), ("dynamic-int8", {}),
           ("torchao-int8-weight", {}), ("torchao-int8-dynamic", {}), ("kv-cache-quant", {}),
           ("static-cache", {})]  # fmt: skip
    one += [("torchao-int4-weight", {"group_size": g}) for g in (32, 64, 128, 256)]
    one += [("prune-magnitude", {"scope": s, "sparsity": p / 100}) for s in ("layer", "global") for p in range(1, 100)]
    one += [("prune-nm", {"n": n, "m": m}) for n, m in ((1, 4), (2, 4), (2, 8), (4, 8))]
    one += [("prune-structured", {"heads": h / 8, "neurons": n / 20}) for h in range(1, 7) for n in range(1, 11)]
    one += [("prune-depth", {"layers": n, "start": s}) for n in (1, 2, 3) for s in (None, 0, 1)]
    one += [("speculative", {"draft": "zoo:micro-s", "draft_tokens": t, "schedule": s})
            for t in range(1, 11) for s in ("constant", "heuristic")]  # fmt: skip
    one += [("prompt-lookup", {"ngram": g, "tokens": t}) for g in range(1, 5) for t in range(2, 22, 2)]
    one += [("sliding-window", {"window": w}) for w in range(8, 136, 8)]
    one += [("attention", {"implementation": i}) for i in ("eager", "sdpa")]
    one += [("compile", {"mode": m}) for m in ("default", "reduce-overhead", "max-autotune")]
    stacks = [[("prune-magnitude", {"scope": "layer", "sparsity": p / 20}), ("torchao-int4-weight", {"group_size": g})]
              for p in range(1, 20) for g in (32, 64, 128, 256)]  # fmt: skip
    stacks += [[("prune-structured", {"heads": h / 8, "neurons": n / 20}), ("dynamic-int8", {})]
               for h in range(1, 7) for n in range(1, 11)]  # fmt: skip
    return [[entry] for entry in one] + stacks


def template() -> list[dict[str, str]]:
    """A real run's measurements in the order it stored them (the baseline of the committed inference report)."""
    with TEMPLATE.open(encoding="utf-8") as file:
        return [row for row in csv.DictReader(file) if row["technique"] == "baseline"]


def _float(text: str) -> float | None:
    return float(text) if text else None


def outcomes(rng: np.random.Generator, quality: np.ndarray, docs: int) -> dict[tuple[str, str], np.ndarray]:
    """Per (task, metric), each run's per-document values (runs × docs): the baseline's, flipped as quality drops."""
    out = {}
    for task, metrics in TASKS.items():
        if task == "micro_text":
            words = rng.integers(5, 15, size=docs)
            loss = rng.uniform(1.0, 3.0, size=docs) / quality[:, None] ** 2  # nats per word, higher when worse
            out[(task, "words")], out[(task, "bytes")] = (
                np.broadcast_to(words, loss.shape),
                np.broadcast_to(words * 4, loss.shape),
            )
            for metric in metrics:
                out[(task, metric)] = -loss * words
            continue
        right = rng.random(docs) < 0.9
        for metric in metrics:
            keep = rng.random((len(quality), docs)) < quality[:, None]
            out[(task, metric)] = np.where(keep, right, ~right).astype(float)
    return out


def quality_figure(metric: str, values: np.ndarray, weights: dict[str, np.ndarray]) -> tuple[float, float | None]:
    """The task's figure from its documents as lm-eval aggregates them, and its standard error (accuracy only)."""
    if metric == "word_perplexity":
        return math.exp(-values.sum() / weights["words"].sum()), None
    if metric == "byte_perplexity":
        return math.exp(-values.sum() / weights["bytes"].sum()), None
    if metric == "bits_per_byte":
        return -values.sum() / weights["bytes"].sum() / math.log(2), None
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def stack_record(stack: list[tuple[str, dict]]) -> dict:
    """The run row's technique columns for a stack, as the sweep stores them."""
    params = stack[0][1] if len(stack) == 1 else {name: p for name, p in stack}
    return {
        "technique": "+".join(name for name, _ in stack),
        "technique_params": json.dumps(params, sort_keys=True),
        "stage": "+".join(STAGES.get(name, "inference") for name, _ in stack),
        "resources": ["memory", "computation"],
        "stack": json.dumps([{"name": name, "params": p} for name, p in stack]),
    }


def run_rows(runs: list[tuple[str, str, list]], docs: int) -> list[RunRecord]:
    """The runs table: one row per run, a failed one every FAILED_EVERY."""
    started = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i, (hardware, model, stack) in enumerate(runs):
        cpu, cores, gib = MACHINES[hardware]
        probes = {"cpu": {"model": cpu, "logical_cores": cores}, "memory": {"total_gib": gib},
                  "os": {"system": "Linux", "machine": "x86_64"}}  # fmt: skip
        failed = i % FAILED_EVERY == FAILED_EVERY - 1
        rows.append(
            RunRecord(
                run_id=hashlib.sha256(f"{hardware} {model} {stack}".encode()).hexdigest()[:16],
                suite="scale",
                model=model,
                model_fingerprint="st-sampled:" + hashlib.sha256(model.encode()).hexdigest()[:16],
                **stack_record(stack),
                tasks=list(TASKS),
                settings=json.dumps({"limit": docs, "batch_size": 1, "bootstrap_iters": 0}),
                status="failed" if failed else "ok",
                error="RuntimeError: out of memory" if failed else None,
                hardware_fingerprint=hardware,
                hardware=json.dumps(probes),
                versions=json.dumps({"torch": "2.13.0", "transformers": "5.0.0", "lm_eval": "0.4.13"}),
                effbench_version="0.1.0",
                started_at=started + timedelta(minutes=i),
                finished_at=started + timedelta(minutes=i + 1),
                duration_s=60.0,
                phase_seconds=json.dumps({"load": 1.0, "apply": 0.5, "accuracy": 20.0, "measure": 38.5}),
                device="cpu",
                dtype="float32",
            )
        )
    return rows


def tables(runs: list[RunRecord], docs: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """Every successful run's measurements and samples, run after run (the rows of one run are contiguous)."""
    rng = np.random.default_rng(seed)
    ok = [r for r in runs if r.status == "ok"]
    quality = rng.uniform(0.6, 1.0, size=len(ok))
    quality[[i for i, r in enumerate(ok) if r.technique == "baseline"]] = 1.0
    values = outcomes(rng, quality, docs)
    rows = template()
    cost = rng.lognormal(0.0, 0.3, size=(len(ok), 1)) / quality[:, None] ** 0.5  # techniques trade quality for cost
    noise = rng.lognormal(0.0, 0.03, size=(len(ok), len(rows)))
    measurements: dict[str, list] = {name: [] for name in MeasurementRow.schema().names}
    for i, run in enumerate(ok):
        for j, row in enumerate(rows):
            factor = float(cost[i, 0] * noise[i, j])
            figure = _float(row["value"])
            stderr, low, high = (_float(row[k]) for k in ("stderr", "ci_low", "ci_high"))
            n = int(row["n"]) if row["n"] else None
            if row["resource"] == "quality" and not row["task"]:  # fidelity to the baseline's outputs
                figure = float(1 - quality[i] if row["metric"] == "kl_divergence" else quality[i])
            elif row["resource"] == "quality":
                metric_values = values[(row["task"], row["metric"])][i]
                weights = {w: values[("micro_text", w)][i] for w in ("words", "bytes")}
                figure, stderr = quality_figure(row["metric"], metric_values, weights)
                low = high = None
                n = docs
            elif figure is not None:
                scale = 1 / factor if row["higher_is_better"] == "True" else factor  # cheaper, faster: better
                figure, stderr, low, high = (None if v is None else v * scale for v in (figure, stderr, low, high))
            cv = _float(row["cv"])
            record = {"run_id": run.run_id, "task": row["task"], "metric": row["metric"], "value": figure or 0.0,
                      "unit": row["unit"], "resource": row["resource"],
                      "higher_is_better": row["higher_is_better"] == "True",
                      "stderr": stderr, "ci_low": low, "ci_high": high, "n": n, "method": row["method"],
                      "scenario": row["scenario"], "cv": None if cv is None else cv * float(noise[i, j]),
                      "phase": row["phase"], "step": None}  # fmt: skip
            for name, value in record.items():
                measurements[name].append(value)
    samples = sample_columns(ok, values, docs)
    return (
        pa.table(measurements, schema=MeasurementRow.schema()),
        pa.table(samples, schema=SampleRow.schema()),
    )


def sample_columns(ok: list[RunRecord], values: dict, docs: int) -> dict[str, list]:
    """Per run, each document's outcome per task and metric, as lm-eval logs them (generated lengths for generation)."""
    columns: dict[str, list] = {name: [] for name in SampleRow.schema().names}
    weight_of = {"word_perplexity": "words", "byte_perplexity": "bytes", "bits_per_byte": "bytes"}
    doc_ids = list(range(docs))
    for i, run in enumerate(ok):
        for task, metrics in TASKS.items():
            for metric in metrics:
                columns["run_id"] += [run.run_id] * docs
                columns["task"] += [task] * docs
                columns["doc_id"] += doc_ids
                columns["metric"] += [metric] * docs
                columns["filter"] += ["none"] * docs
                columns["value"] += values[(task, metric)][i].tolist()
                weight = weight_of.get(metric)
                columns["weight"] += values[(task, weight)][i].tolist() if weight else [None] * docs
                tokens = [6 + (d + i) % 3 for d in doc_ids] if task in GENERATIVE else [None] * docs
                columns["prediction_tokens"] += tokens
    return columns


def write_store(root: Path, runs: list[RunRecord], measurements: pa.Table, samples: pa.Table, docs: int) -> None:
    """One file per run and table, like the sweep's: the first run through the store's writer, the rest the same way
    without fsync (a sweep writes one run at a time; this writes ten thousand)."""
    store = ResultsStore(root)
    per_run = {MeasurementRow: measurements, SampleRow: samples}
    offsets = dict.fromkeys(per_run, 0)
    of_a_run = {MeasurementRow: len(template()), SampleRow: sum(map(len, TASKS.values())) * docs}
    for i, run in enumerate(runs):
        rows = of_a_run if run.status == "ok" else dict.fromkeys(per_run, 0)
        parts = {kind: table.slice(offsets[kind], rows[kind]) for kind, table in per_run.items()}
        if i == 0:
            store.write_run(
                run,
                [MeasurementRow.from_row(r) for r in parts[MeasurementRow].to_pylist()],
                [SampleRow.from_row(r) for r in parts[SampleRow].to_pylist()],
            )
        else:
            for kind, part in parts.items():
                write_parquet(part, root / kind.table / f"{run.run_id}.parquet")
            write_parquet(
                pa.Table.from_pylist([run.as_row()], schema=RunRecord.schema()), root / "runs" / f"{run.run_id}.parquet"
            )
        for kind in per_run:
            offsets[kind] += rows[kind]


def timed(argv: list[str], log: Path, code: Path | None = None) -> float:
    """Wall-clock seconds of one command, as a user runs it (its output to a file); ``code``: another checkout's
    effbench to run instead of this one."""
    env = os.environ if code is None else {**os.environ, "PYTHONPATH": str(code)}
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "effbench.cli", *argv], stdout=out, stderr=subprocess.STDOUT,
                              env=env, cwd=code)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"`effbench {' '.join(argv)}` failed (exit {done.returncode}); its output: {log}")
    return seconds


def side_by_side(root: Path, folder: Path, against: str, repeat: int) -> None:
    """Both commands of this code and of the commit ``against`` (a worktree of it, its own snapshot cache),
    alternated ``repeat`` times after a first read each: the machine's speed drifts, so only figures measured side
    by side compare."""
    repo = Path(__file__).resolve().parents[1]
    other = folder / "against"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(other), against], check=True,
                   capture_output=True)  # fmt: skip
    try:
        sides = {"this": (None, folder / "cache"), against: (other, folder / "cache-against")}
        times: dict[tuple[str, str], list[float]] = {}
        for attempt in range(repeat + 1):  # the first builds each side's snapshot
            for name, (code, cache) in sides.items():
                os.environ["EFFBENCH_CACHE"] = str(cache)
                for command in ("report", "leaderboard"):
                    out = ["--out", str(folder / f"boards-{attempt}")] if command == "leaderboard" else []
                    seconds = timed([command, "--results", str(root), *out], folder / f"{command}.log", code)
                    if attempt:
                        times.setdefault((name, command), []).append(seconds)
        for command in ("report", "leaderboard"):
            mine, theirs = (sorted(times[(name, command)]) for name in sides)
            middle, theirs_middle = statistics.median(mine), statistics.median(theirs)
            listed = [", ".join(f"{t:.2f}" for t in seconds) for seconds in (mine, theirs)]
            print(f"effbench {command}: this code {listed[0]} s, {against} {listed[1]} s; medians {middle:.2f} s "
                  f"against {theirs_middle:.2f} s (× {middle / theirs_middle:.2f})")  # fmt: skip
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(other)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs (machines × models × configurations)")
    parser.add_argument("--docs", type=int, default=20, help="documents per task")
    parser.add_argument("--keep", type=Path, help="write the store here (kept; timed again if it is there already)")
    parser.add_argument("--write-only", action="store_true", help="write the store (with --keep), time nothing")
    parser.add_argument("--against", metavar="COMMIT", help="also time this commit's code, side by side")
    parser.add_argument("--repeat", type=int, default=3, help="side-by-side rounds (with --against)")
    args = parser.parse_args()
    per_group = args.runs // (len(MACHINES) * len(MODELS))
    stacks = configurations()
    if per_group > len(stacks):
        sys.exit(f"at most {len(stacks) * len(MACHINES) * len(MODELS)} runs: {len(stacks)} technique configurations")
    with tempfile.TemporaryDirectory() as folder:
        root = args.keep or Path(folder) / "results"
        if (root / "runs").is_dir():  # a store kept by an earlier run: timed again
            print(f"store: {root}, kept from an earlier run")
        else:
            runs = [(hw, model, stack) for hw in MACHINES for model in MODELS for stack in stacks[:per_group]]
            started = time.perf_counter()
            records = run_rows(runs, args.docs)
            measurements, samples = tables(records, args.docs)
            write_store(root, records, measurements, samples, args.docs)
            print(
                f"store: {len(records)} runs ({sum(r.status != 'ok' for r in records)} failed), "
                f"{measurements.num_rows} measurement rows, {samples.num_rows} sample rows, "
                f"{len(MACHINES)} machines × {len(MODELS)} models × {per_group} technique configurations; "
                f"written in {time.perf_counter() - started:.1f} s"
            )
        if args.write_only:
            return 0
        if args.against:
            side_by_side(root, Path(folder), args.against, args.repeat)
            return 0
        os.environ["EFFBENCH_CACHE"] = str(Path(folder) / "cache")  # no snapshot of an earlier run
        startup = timed(["--version"], Path(folder) / "version.log")
        print(f"python -m effbench.cli --version: {startup:.2f} s (interpreter and CLI start)")
        for attempt in ("first (builds the snapshot)", "second (reads the snapshot)"):
            report = timed(["report", "--results", str(root)], Path(folder) / "report.log")
            board = timed(["leaderboard", "--results", str(root), "--out", str(Path(folder) / "boards")],
                          Path(folder) / "leaderboard.log")  # fmt: skip
            print(f"{attempt}: effbench report {report:.2f} s, effbench leaderboard {board:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
