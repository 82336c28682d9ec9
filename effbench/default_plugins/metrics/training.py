"""The training run's own figures, from a window around the train phase: time, throughput, FLOP/s, MFU, cost, loss.

Memory, energy and CO2 of the same window come from the metrics that measure every window
(peak RSS, accelerator peak, energy), so training and inference are measured alike. In a distributed
run every rank measures its own window: times and cost are the slowest rank's, throughputs the ranks' sum.
"""

from __future__ import annotations

import time

from effbench.api.context import Measurement, RunContext
from effbench.api.metric import Metric, Quantity, Window
from effbench.api.training import TrainingRun
from effbench.config.prices import cost
from effbench.hookspecs import hookimpl

FINAL_LOSS_STEPS = 10  # the final loss is the mean of the last steps' losses: one step's loss is noisy


class _TrainWindow(Window):
    """A window around the train phase: its wall clock, and the finished ``TrainingRun`` read at close."""

    def __init__(self, metric: Training) -> None:
        self.metric = metric
        self.started = time.perf_counter()

    def close(self, run: RunContext) -> list[Measurement]:
        seconds = time.perf_counter() - self.started
        trained: TrainingRun | None = run.training
        if trained is None or not trained.steps:
            return []
        m = self.metric.measurement
        out = [
            m(seconds, method="wall clock around the train phase (techniques' set-up, loop, saving the weights)"),
            m(seconds / trained.steps, "train_step_time", method="train phase wall clock ÷ optimizer steps"),
            m(trained.tokens / seconds, "train_tokens_per_s", method="target tokens (in the loss) ÷ wall clock"),
            m(trained.trainable_parameters, "trainable_params", method="parameters with requires_grad when trained"),
            m(
                100 * trained.trainable_parameters / trained.total_parameters,
                "trainable_params_pct",
                method="trainable ÷ all parameters of the trained model (adapters included)",
            ),
            m(trained.total_parameters, "train_total_params", method="all parameters of the trained model"),
            m(trained.checkpoint_bytes / 1e6, "checkpoint_size", method="trainable parameters saved as safetensors"),
            m(
                trained.optimizer_state_bytes / 1e6,
                "optimizer_state_size",
                method="bytes of the optimizer's state tensors after the last step (moments, factors, step counts)",
            ),
            *(m(loss, "train_loss", step=step, method="mean loss of the step's batch") for step, loss in
              enumerate(trained.losses)),
            m(
                sum(trained.losses[-FINAL_LOSS_STEPS:]) / len(trained.losses[-FINAL_LOSS_STEPS:]),
                "final_train_loss",
                method=f"mean loss of the last {min(FINAL_LOSS_STEPS, trained.steps)} steps",
            ),
        ]  # fmt: skip
        if trained.flops:
            achieved = trained.flops / seconds
            counted = "torch FlopCounterMode on the first step (forward + backward) × positions computed"
            out.append(m(achieved / 1e9, "train_flops_per_s", method=f"{counted} ÷ wall clock"))
            if trained.peak_flops_per_s:
                out.append(m(100 * achieved / trained.peak_flops_per_s, "train_mfu", method="achieved ÷ peak"))
            else:
                run.warnings.append(f"train_mfu not reported: {trained.no_peak_reason}")
        if trained.target_loss is not None:
            reached = trained.steps_to_target
            if reached is None:
                run.warnings.append(
                    f"steps_to_target_loss not reported: the loss never reached {trained.target_loss:g} "
                    f"in {trained.steps} steps"
                )
            else:
                first = f"first step with loss ≤ {trained.target_loss:g}"
                out.append(m(reached, "steps_to_target_loss", method=first))
                clock = f"wall clock from the loop's first step to the end of the {first} (MLPerf's time to train)"
                out.append(m(trained.time_to_target, "train_time_to_target_loss", method=clock))
        price = run.settings.get("price")
        if price:
            usd = cost(price, seconds, None)["hardware_usd"]
            out.append(m(usd, "train_cost", method=f"hardware {price['basis']} × train phase wall clock"))
        return out


class Training(Metric):
    """Time, throughput, parameters, checkpoint size, loss curve and cost of a run's training (train phase only)."""

    name = "train_time"
    unit = "s"
    resource = "computation"
    higher_is_better = False
    phases = ("train",)
    description = "Wall-clock seconds of the train phase: the training techniques' set-up, the loop, saving."
    quantities = (
        Quantity(name, unit, resource, False, description, header="Train (s)", digits=1, headline=True,
                 combine="max"),
        Quantity("train_step_time", "s", resource, False, "Seconds per optimizer step.", header="s/step", digits=3,
                 combine="max"),
        Quantity("train_tokens_per_s", "tokens/s", resource, True, "Target tokens trained on per second.",
                 header="Train tok/s", digits=0, combine="sum"),
        Quantity("train_flops_per_s", "GFLOP/s", resource, True, "Achieved FLOP/s of training (forward + backward).",
                 header="Train GFLOP/s", digits=2, combine="sum"),
        Quantity("train_mfu", "%", resource, True, "Model FLOP/s utilisation: achieved ÷ the device's peak FLOP/s "
                 "(absent where the peak is unknown, e.g. on cpu; a warning says why).", header="MFU (%)", digits=1),
        Quantity("trainable_params", "params", "memory", False, "Parameters trained.", header="Trainable",
                 digits=0),
        Quantity("trainable_params_pct", "%", "memory", False, "Share of the model's parameters trained.",
                 header="Trainable (%)", digits=2, headline=True),
        Quantity("train_total_params", "params", "memory", False, "All parameters of the trained model.",
                 header="Params (trained model)", digits=0, detail=True),
        Quantity("checkpoint_size", "MB", "memory", False, "The trained parameters saved as safetensors: the adapter "
                 "of a parameter-efficient method, the whole model of full fine-tuning.", header="Checkpoint (MB)",
                 digits=3),
        Quantity("optimizer_state_size", "MB", "memory", False, "The optimizer's state tensors after training "
                 "(AdamW: two moments per trained parameter).", header="Optimizer state (MB)", digits=3, combine="max"),
        Quantity("train_loss", "nats/token", "quality", False, "Loss of each step (the loss curve; the "
                 "step index is in `step`).", detail=True),
        Quantity("final_train_loss", "nats/token", "quality", False,
                 f"Mean loss of the last {FINAL_LOSS_STEPS} steps.", header="Final loss", digits=3, headline=True),
        Quantity("steps_to_target_loss", "steps", resource, False, "Steps until the loss first reached the suite's "
                 "training.target_loss (absent when it never did: a warning says so).", header="Steps to target",
                 digits=0, combine="max"),
        Quantity("train_time_to_target_loss", "s", resource, False, "Seconds from the loop's first step until the "
                 "loss first reached training.target_loss (MLPerf Training's time to train; absent when never).",
                 header="Time to target (s)", digits=1, headline=True, combine="max"),
        Quantity("train_cost", "USD", "money", False, "Hardware $/h × the train phase's wall clock.",
                 header="Train cost ($)", digits=5, combine="max"),
    )  # fmt: skip

    def open(self, run: RunContext) -> Window | None:
        """A window in the train phase only: this metric also sees every repeat, where there is nothing to train."""
        return _TrainWindow(self) if run.phase == "train" else None


@hookimpl
def register_metrics(register):
    register(Training())
