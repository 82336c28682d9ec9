"""One run, in whatever executor runs it: the phases its technique stack calls for, each measured.

Techniques of the ``apply`` phase transform the loaded model; those of the ``train`` phase shape
one bounded training run (the suite's ``training`` data and budget) and hand back the trained
model. Every run then evaluates the result: lm-eval accuracy, then the load scenarios.
The instruments open windows around each one-off phase (the technique's own cost), lm-eval's
generative requests (energy per correct answer), each repeat of each scenario, each scenario, and the run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from effbench.api.context import Measurement, Request, RunContext
from effbench.api.technique import Technique, import_libraries, stack_phases
from effbench.api.training import TrainingOptions, TrainingRun
from effbench.api.vocabulary import GENERATE
from effbench.config.suite import LOAD_OPTIONS, Scenario
from effbench.errors import EffbenchError, NotApplicable
from effbench.measure import accuracy, fidelity, scenarios
from effbench.measure.device import synchronize
from effbench.measure.statistics import combine_repeats
from effbench.measure.windows import Instruments
from effbench.plugins import Registry, registry
from effbench.records import PHASE_EVALUATE, RunPlan, StackEntry, stack_params
from effbench.reference import zoo
from effbench.run.distributed import TrainJob, train_on_ranks
from effbench.run.fingerprint import model_fingerprint
from effbench.train.distributed import Parallel

PHASE_TITLES = {
    "load": "loading model",
    "apply": "applying technique",
    "train": "training",
    "accuracy": "accuracy (lm-eval)",
    "measure": "measuring resources",
}


class PhaseClock:
    """Wall-clock seconds per phase of a run; each start is announced to the parent's progress bar."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.started_at = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._current: str | None = None
        self._since = 0.0

    def start(self, name: str) -> None:
        self.stop()
        self._current, self._since = name, time.perf_counter()
        self.emit(PHASE_TITLES[name])

    def stop(self) -> None:
        if self._current:
            self.seconds[self._current] = round(time.perf_counter() - self._since, 3)
            self._current = None


@dataclass(frozen=True)
class Step:
    """One technique of the stack, resolved from the registry, with the phase it acts in."""

    technique: Technique
    params: dict[str, Any]
    phase: str


def resolve_stack(stack: tuple[StackEntry, ...], reg: Registry) -> list[Step]:
    """The stack's techniques in order of application, each with the phase it acts in."""
    steps = []
    for entry in stack:
        technique = reg.technique(entry.name)
        steps.append(Step(technique, entry.params, technique.phase))
    return steps


def _apply(step: Step, model: Any, tokenizer: Any, alone: bool) -> Any:
    """One technique's ``apply``; a refusal names the technique when it is one of a stack."""
    try:
        return step.technique.apply(model, tokenizer, **step.params)
    except NotApplicable as err:
        if alone:
            raise
        raise NotApplicable(f"{step.technique.name}: {err}") from None  # which of the stack's techniques


def apply_stack(steps: list[Step], model: Any, tokenizer: Any, alone: bool = True) -> tuple[Any, dict[str, Any]]:
    """Apply each technique in turn; merge their ``generate`` arguments (a key two techniques set is an error)."""
    generate_kwargs: dict[str, Any] = {}
    for step in steps:
        model = _apply(step, model, tokenizer, alone)
        model.eval()
    for step in steps:
        extra = step.technique.generation_kwargs(model, tokenizer, **step.params)
        clash = sorted(set(extra) & set(generate_kwargs))
        if clash:
            raise EffbenchError(f"technique {step.technique.name!r} sets generate argument {clash[0]!r} already set")
        generate_kwargs.update(extra)
    return model, generate_kwargs


def train_stack(
    steps: list[Step],
    model: Any,
    tokenizer: Any,
    settings: dict[str, Any],
    placement: tuple[str, str],
    alone: bool = True,
    parallel: Parallel | None = None,
) -> tuple[Any, TrainingRun]:
    """Let the training techniques shape the model and the loop, train within the budget, then finish each one.

    ``settings`` are the suite's ``training`` (data, budget, seed); ``placement`` the run's device and dtype;
    ``parallel`` this process's rank when the run trains on several.
    """
    from effbench.train import loop

    loop.seed_everything(settings["seed"])  # before apply: new weights (adapters) start the same in every run
    for step in steps:
        model = _apply(step, model, tokenizer, alone)
    options = TrainingOptions.merged(
        [(s.technique.name, s.technique.training_options(model, tokenizer, **s.params)) for s in steps]
    )
    model, run = loop.train(model, tokenizer, settings, options, *placement, parallel=parallel)
    for step in steps:
        model = step.technique.after_training(model, tokenizer, **step.params)
    model.eval()
    return model, run


def run_phase(
    phase: str, steps: list[Step], model: Any, ctx: RunContext, plan: RunPlan, alone: bool
) -> tuple[Any, dict[str, Any]]:
    """Act on the model in one phase: train it, or apply the phase's techniques; their ``generate`` arguments."""
    if phase == "train":
        placement = (plan.device, plan.dtype)
        model, ctx.training = train_stack(steps, model, ctx.tokenizer, plan.settings["training"], placement, alone)
        return model, {}
    return apply_stack(steps, model, ctx.tokenizer, alone)


def rank_job(steps: list[Step], model: Any, ctx: RunContext, plan: RunPlan, alone: bool) -> TrainJob:
    """What each rank of a distributed train phase needs: this run's model, training steps and settings."""
    return TrainJob(train=train_stack, steps=steps, model=model, tokenizer=ctx.tokenizer,
                    training=plan.settings["training"], dtype=plan.dtype, alone=alone, technique=ctx.technique,
                    params=ctx.params, settings=ctx.settings)  # fmt: skip


def measure_scenario(ctx: RunContext, scenario: Scenario, instruments: Instruments) -> list[Measurement]:
    """Warm up, then serve every repeat inside the repeat-scope windows, then the scenario-scope metrics."""
    ctx.scenario = scenario
    scenarios.warm_up(ctx, scenario)
    per_repeat, all_requests, seconds = [], [], []
    for repeat in range(scenario.repeats):
        ctx.requests, ctx.workload_seconds = [], 0.0
        opened = instruments.open(instruments.by_scope["repeat"], ctx)
        ctx.requests, ctx.workload_seconds = scenarios.run_repeat(ctx, scenario, repeat)
        per_repeat.append(instruments.close(opened, ctx))
        all_requests += ctx.requests
        seconds.append(ctx.workload_seconds)
    ctx.requests, ctx.repeat_seconds, ctx.workload_seconds = all_requests, seconds, sum(seconds)
    ctx.measurements = combine_repeats(per_repeat)
    reported = ctx.measurements + instruments.measure_once("scenario", ctx)
    return [replace(m, scenario=scenario.label) for m in reported]


def measure(ctx: RunContext, instruments: Instruments, scenario_list: list[Scenario]) -> list[Measurement]:
    """Every scenario in turn, then the run-scope metrics (size, parameters, accuracy)."""
    measurements = []
    for scenario in scenario_list:
        measurements += measure_scenario(ctx, scenario, instruments)
    ctx.scenario, ctx.requests, ctx.measurements = None, [], []
    return instruments.measure_once("run", ctx) + measurements


@contextlib.contextmanager
def generation_window(
    ctx: RunContext, instruments: Instruments, out: list[Measurement], answers: list[tuple[int, int]]
) -> Iterator[list[tuple[int, int]]]:
    """lm-eval's generative requests as a window of the instruments that measure the generate phase.

    The caller appends each answer's (prompt, new) token counts to ``answers``, so the window's figures per
    token and per request describe the answers lm-eval generated; its measurements are appended to ``out``.
    """
    ctx.phase, ctx.requests = GENERATE, []
    opened = instruments.open(instruments.for_phase(GENERATE), ctx)
    began = time.perf_counter()
    try:
        yield answers
    finally:
        synchronize(ctx.device)
        seconds = time.perf_counter() - began
        ctx.requests = [Request(prompt, new, seconds / len(answers)) for prompt, new in answers]
        out += instruments.close(opened, ctx)
        ctx.phase, ctx.requests = PHASE_EVALUATE, []


PER_REQUEST, PER_CORRECT_ANSWER = "_per_request", "_per_correct_answer"


def per_correct_answer(
    generation: list[Measurement], answers: int, correct: int, declared: set[str]
) -> list[Measurement]:
    """Each declared ``<quantity>_per_correct_answer`` from its per-request figure over lm-eval's generation.

    An answer that is longer or wrong costs without counting: a technique cannot look cheaper by answering worse.
    """
    out = []
    for m in generation:
        name = m.metric.removesuffix(PER_REQUEST) + PER_CORRECT_ANSWER
        if not m.metric.endswith(PER_REQUEST) or name not in declared or not correct or not answers:
            continue
        unit = m.unit.replace("/request", "/correct answer")
        method = f"{m.method}; lm-eval's generation ÷ {correct} correct answers of {answers}"
        out.append(replace(m, metric=name, value=m.value * answers / correct, unit=unit, method=method,
                           phase=PHASE_EVALUATE, n=correct))  # fmt: skip
    return out


TO_TARGET_LOSS = "_to_target_loss"


def to_target_loss(
    train: list[Measurement], run: TrainingRun | None, seconds: float, declared: set[str]
) -> list[Measurement]:
    """Each declared ``<energy quantity>_to_target_loss``: the train window's figure × the share of its time to target.

    ``seconds`` is the train phase's wall clock; the share assumes constant power over the window.
    """
    reached = run.time_to_target if run is not None else None
    if reached is None or seconds <= 0:
        return []
    share = min(1.0, reached / seconds)
    out = []
    for m in train:
        name = m.metric + TO_TARGET_LOSS
        if m.resource != "energy" or m.step is not None or name not in declared:
            continue
        spent = f"× {share:.3f}, the share of the train phase's {seconds:.1f} s spent until the target loss"
        out.append(replace(m, metric=name, value=m.value * share, method=f"{m.method}; {spent}"))
    return out


def build_reference(ctx: RunContext) -> fidelity.Reference | None:
    """The baseline's next-token distributions on the fixed sample; a failure is a warning, never a failed run."""
    try:
        return fidelity.build(ctx.model, ctx.tokenizer)
    except Exception as err:  # any model's forward pass: the run's other figures stand without fidelity
        ctx.warnings.append(f"no fidelity reference built: {err!r}")
        return None


def execute(payload: dict[str, Any], emit: Callable[[str], None]) -> dict[str, Any]:
    """Run one planned run (a ``RunPlan`` payload); return its measurements, samples, phase times and warnings."""
    plan = RunPlan.from_payload(payload)
    reg = registry()
    steps = resolve_stack(plan.stack, reg)
    import_libraries([step.technique for step in steps])
    instruments = Instruments(list(reg.metrics.values()))
    clock = PhaseClock(emit)
    clock.start("load")
    settings = plan.settings
    model, tokenizer = zoo.load(
        plan.model,
        revision=plan.revision,
        trust_remote_code=plan.trust_remote_code,
        device=plan.device,
        dtype=plan.dtype,
        **{option: settings[option] for option in LOAD_OPTIONS if option in settings},
    )
    fingerprint = model_fingerprint(plan.model, model)
    ctx = RunContext(
        model=model,
        tokenizer=tokenizer,
        technique=plan.label,
        params=stack_params(plan.stack),
        settings={
            **{k: settings[k] for k in ("country", "idle_seconds", "price")},
            "prompt_tokens": settings["scenarios"][0]["prompt_tokens"],
            "fidelity_reference": plan.fidelity_reference,
        },
        started_at=clock.started_at,
        device=plan.device,
    )
    measurements: list[Measurement] = []
    for phase in stack_phases([step.technique for step in steps]):  # each phase once, in order
        clock.stop()
        ctx.phase = phase
        ranks = plan.settings["training"].get("ranks", 1) if phase == "train" else 1
        opened = instruments.open(instruments.for_phase(phase), ctx) if ranks == 1 else []  # else: the ranks'
        clock.start(phase)  # after the instruments opened: their start-up is not the technique's time
        ranked: list[Measurement] = []
        try:
            phase_steps = [s for s in steps if s.phase == phase]
            if ranks > 1:  # each rank measures its own window; they come back combined
                job = rank_job(phase_steps, model, ctx, plan, alone=len(steps) == 1)
                model, ranked = train_on_ranks(job, ranks, plan.device, instruments, ctx)
                generate_kwargs: dict[str, Any] = {}
            else:
                model, generate_kwargs = run_phase(phase, phase_steps, model, ctx, plan, alone=len(steps) == 1)
        except NotApplicable as err:  # nothing to measure: a "not applicable" row, not a failure
            clock.stop()
            instruments.close(opened, ctx)  # stop the instruments' trackers; their figures describe nothing
            return {"phase_seconds": clock.seconds, "not_applicable": str(err), "model_fingerprint": fingerprint}
        ctx.generate_kwargs.update(generate_kwargs)
        synchronize(plan.device)  # the technique's queued device work is part of its time
        clock.stop()
        closed = instruments.close(opened, ctx) + ranked
        if phase == "train":  # on several ranks: their summed energy over their windows' time, not the launch's
            seconds = next((m.value for m in ranked if m.metric == "train_time"), clock.seconds[phase])
            closed += to_target_loss(closed, ctx.training, seconds, instruments.declared)
        measurements += closed
    ctx.model, ctx.phase = model, PHASE_EVALUATE
    ctx.apply_seconds = clock.seconds.get("apply", 0.0)
    clock.start("accuracy")
    generation: list[Measurement] = []
    answers: list[tuple[int, int]] = []
    ctx.accuracy, samples = accuracy.evaluate(
        model,
        tokenizer,
        list(plan.tasks),
        task_dirs=plan.task_dirs,
        limit=settings["limit"],
        batch_size=settings["batch_size"],
        bootstrap_iters=settings["bootstrap_iters"],
        generate_kwargs=ctx.generate_kwargs,
        generation_window=lambda: generation_window(ctx, instruments, generation, answers),
    )
    correct = accuracy.correct_answers(samples)
    measurements += generation + per_correct_answer(generation, len(answers), correct, instruments.declared)
    clock.start("measure")
    if plan.builds_reference:
        ctx.reference = build_reference(ctx)
    scenario_list = [Scenario.model_validate(s) for s in settings["scenarios"]]
    measurements += measure(ctx, instruments, scenario_list)
    clock.stop()
    return {
        "phase_seconds": clock.seconds,
        "measurements": [asdict(m) for m in measurements],
        "samples": samples,
        "warnings": [*instruments.warnings, *ctx.warnings],
        "model_fingerprint": fingerprint,
        "reference": ctx.reference.to_bytes() if ctx.reference is not None else None,
    }
