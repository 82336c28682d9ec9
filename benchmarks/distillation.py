"""Knowledge distillation against training alone: micro-s taught by micro-m, and micro-s trained on the same budget.

Runs `effbench evaluate suites/distillation.yaml` into RESULTS_DIR (resumes: stored runs are kept), then prints
per task each run's accuracy ± stderr and the paired difference distill − finetune-full on the same documents
(bootstrap 95 % CI, McNemar's p), and each run's train-phase figures: whether the KD student beats the
student trained alone beyond the interval on some task.
Run: OMP_NUM_THREADS=1 python benchmarks/distillation.py RESULTS_DIR    (minutes on 2 CPU cores)
"""

import subprocess
import sys
import time
from pathlib import Path

from effbench.measure.paired import compare_outcomes
from effbench.store.load import load

SUITE = Path(__file__).resolve().parents[1] / "suites" / "distillation.yaml"
TRAIN_FIGURES = ("train_time", "train_step_time", "train_flops_per_s", "peak_memory", "energy", "final_train_loss")


def main() -> int:
    output = Path(sys.argv[1])
    started = time.perf_counter()
    sweep = subprocess.run([sys.executable, "-m", "effbench.cli", "evaluate", str(SUITE), "--output", str(output)])
    print(f"sweep: exit {sweep.returncode} in {time.perf_counter() - started:.0f} s")
    results = load(output)
    runs = {run.technique: run for run in results.runs if run.status == "ok"}
    alone, kd = runs["finetune-full"], runs["distill"]
    for technique, run in runs.items():
        train = {m.metric: m.value for m in results.measurements_of(run.run_id) if m.in_phase == "train" and not m.step}
        print(f"{technique}: " + "  ".join(f"{k} {train[k]:.4g}" for k in TRAIN_FIGURES if k in train))
    beats = []
    for m in results.measurements_of(kd.run_id):
        if not m.task or m.metric not in ("exact_match", "acc"):
            continue
        figures = {
            t: next(x for x in results.measurements_of(r.run_id) if (x.task, x.metric) == (m.task, m.metric))
            for t, r in runs.items()
        }
        shown = "  ".join(f"{t} {f.value:.3f} ± {f.stderr or 0:.3f}" for t, f in figures.items())
        mine, theirs = (results.outcome(r.run_id, m.task, m.metric) for r in (kd, alone))
        (paired,) = compare_outcomes([mine], theirs, m.metric)
        if paired is None:
            print(f"{m.task} {m.metric}: {shown}")
            continue
        print(
            f"{m.task} {m.metric}: {shown}  distill − finetune-full {paired.delta:+.3f} "
            f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}] p={paired.p_value}"
        )
        if paired.ci_low > 0:
            beats.append(m.task)
    print(f"the KD student beats the student trained alone beyond the 95 % CI on: {', '.join(beats) or 'no task'}")
    return sweep.returncode


if __name__ == "__main__":
    sys.exit(main())
