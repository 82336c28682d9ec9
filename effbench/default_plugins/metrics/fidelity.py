"""Builtin fidelity metric: KL divergence from the baseline's next-token distributions and top-1 agreement."""

from __future__ import annotations

from pathlib import Path

from effbench.api.context import Measurement, RunContext
from effbench.api.metric import Metric, Quantity
from effbench.api.vocabulary import QUALITY
from effbench.hookspecs import hookimpl
from effbench.measure import fidelity
from effbench.measure.statistics import bootstrap_mean_ci

SAMPLE_TEXT = f"{fidelity.SEQUENCES} micro-world texts of {{tokens}} tokens"


class Fidelity(Metric):
    """How closely the run's model predicts the next token as the baseline does: damage accuracy may not show."""

    name = "kl_divergence"
    unit = "nats/token"
    resource = QUALITY
    higher_is_better = False
    scope = "run"
    description = (
        "Mean KL divergence KL(baseline ‖ this run) of the next-token distributions over the positions of a fixed "
        "micro-world text sample; over the baseline's top-64 tokens plus the rest for larger vocabularies."
    )
    quantities = (
        Quantity(name, unit, QUALITY, False, description, header="KL (nats/tok)", digits=4, headline=True),
        Quantity("top1_agreement", "", QUALITY, True,
                 "Fraction of the sample's positions where this run's most likely next token is the baseline's.",
                 header="Top-1 agree", digits=3),
    )  # fmt: skip

    def stop(self, run: RunContext) -> list[Measurement] | None:
        reference = run.reference or self._stored(run)
        if reference is None:
            return None
        try:
            comparison = fidelity.compare(run.model, reference)
        except ValueError as err:  # another vocabulary: nothing comparable
            run.warnings.append(f"no fidelity figures: {err}")
            return None
        tokens = reference.input_ids.shape[-1]
        if reference.exact:
            how = f"exact KL over the full vocabulary of {reference.vocabulary} tokens"
        else:
            k, size = reference.summary.top_ids.shape[-1], reference.vocabulary
            how = (
                f"KL over the baseline's top-{k} tokens plus one bucket for the rest of the {size}-token vocabulary: "
                "a lower bound of the full KL"
            )
        sample = SAMPLE_TEXT.format(tokens=tokens)
        figures = (
            ("kl_divergence", comparison.kl, f"{how}; float32 log-softmax of the logits on {sample}"),
            ("top1_agreement", comparison.agreement, f"most likely next token equal to the baseline's on {sample}"),
        )
        out = []
        for quantity, per_text, method in figures:
            low, high = bootstrap_mean_ci(per_text)
            value = sum(per_text) / len(per_text)  # texts of equal length: the mean over all positions
            method += "; 95 % CI: bootstrap over the texts"
            n = comparison.positions
            out.append(self.measurement(value, quantity, ci_low=low, ci_high=high, n=n, method=method))
        return out

    @staticmethod
    def _stored(run: RunContext) -> fidelity.Reference | None:
        """The baseline's stored reference, or None with a warning saying why (none was planned: no warning)."""
        path = run.settings.get("fidelity_reference")
        if not path:
            return None
        if not Path(path).is_file():
            run.warnings.append(
                f"no fidelity figures: the baseline's reference {Path(path).name} is not in the store (the baseline "
                "run failed, or was stored by an earlier effbench: rerun it with --force)"
            )
            return None
        try:
            return fidelity.Reference.read(Path(path))
        except ValueError as err:
            run.warnings.append(f"no fidelity figures: {err}")
            return None


@hookimpl
def register_metrics(register):
    register(Fidelity())
