"""Builtin run-level metrics: accuracy (from lm-eval), parameters, size in memory and on disk, FLOPs, apply time."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path
from typing import Any

from effbench.api.context import Measurement, RunContext
from effbench.api.metric import Metric, Quantity
from effbench.api.vocabulary import QUALITY
from effbench.default_plugins.metrics.safetensors_size import NotComputable, saved_bytes
from effbench.hookspecs import hookimpl
from effbench.measure.accuracy import CI_KEYS

# lm-eval metrics where a smaller value is better (everything else it reports is higher-is-better).
LOWER_IS_BETTER = {"word_perplexity", "byte_perplexity", "bits_per_byte", "perplexity"}


def _finite(value: Any) -> float | None:
    """A number lm-eval reported, or None for its "N/A" and non-finite values."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class Accuracy(Metric):
    """Every task metric lm-eval reported for the run, with its standard error."""

    name = "accuracy"
    unit = ""
    resource = QUALITY
    higher_is_better = True
    scope = "run"
    description = "Task metrics from lm-evaluation-harness on the modified model (acc, exact_match, ...)."

    def stop(self, run: RunContext) -> list[Measurement]:
        out = []
        for task, result in run.accuracy.items():
            n = result.get("n")
            for key, value in result.items():
                if "," not in key or not isinstance(value, int | float):
                    continue
                metric, filter_name = key.split(",", 1)
                if metric.endswith(("_stderr", *CI_KEYS)):
                    continue
                stderr, low, high = (
                    _finite(result.get(f"{metric}{suffix},{filter_name}")) for suffix in ("_stderr", *CI_KEYS)
                )
                out.append(
                    Measurement(
                        metric=metric,
                        value=float(value),
                        unit="",
                        resource=QUALITY,
                        higher_is_better=metric not in LOWER_IS_BETTER,
                        task=task,
                        stderr=stderr,
                        ci_low=low,
                        ci_high=high,
                        n=n,
                        method=f"lm-eval ({filter_name} filter)",
                    )
                )
        return out


class Parameters(Metric):
    """Total, non-zero and trainable parameter counts: what pruning removes or fine-tuning trains shows up here."""

    name = "parameters"
    unit = "count"
    resource = "memory"
    higher_is_better = False
    scope = "run"
    description = "Total parameters, those that are not exactly zero, and those that require gradients."
    quantities = (
        Quantity(name, unit, resource, False, "Total parameters of the evaluated model.", detail=True),
        Quantity("parameters_nonzero", "count", "memory", False, "Parameters that are not exactly zero.",
                 header="Non-zero params (M)", scale=1e-6, digits=3, headline=True),
        Quantity("parameters_trainable", "count", "memory", False, "Parameters that require gradients.",
                 detail=True),
    )  # fmt: skip

    def stop(self, run: RunContext) -> list[Measurement]:
        from effbench.modeling import parameter_counts

        total, nonzero = parameter_counts(run.model)
        trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
        return [
            self.measurement(total),
            self.measurement(nonzero, "parameters_nonzero"),
            self.measurement(trainable, "parameters_trainable"),
        ]


class WeightBytes(Metric):
    """Bytes the weights occupy in memory, as stored (a quantized tensor counts its packed size)."""

    name = "weight_bytes"
    unit = "MB"
    resource = "memory"
    higher_is_better = False
    scope = "run"
    description = "Parameters and buffers in memory, in megabytes (10^6 bytes)."
    quantities = (
        Quantity(name, unit, resource, False, description, header="Size (MB)", digits=2,
                 ratio_header="Compression ×", headline=True),
    )  # fmt: skip

    def stop(self, run: RunContext) -> Measurement:
        from effbench.modeling import weight_bytes

        return self.measurement(weight_bytes(run.model) / 1e6, method="bytes of every tensor, quantized ones packed")


class DiskBytes(Metric):
    """Size of the model as saved with safetensors (computed, not written, where it can be): what a user stores."""

    name = "disk_bytes"
    unit = "MB"
    resource = "memory"
    higher_is_better = False
    scope = "run"
    description = "Size of the saved weights in MB: safetensors, or torch.save where safetensors cannot hold them."
    quantities = (Quantity(name, unit, resource, False, description, header="On disk (MB)", digits=2),)
    method = (
        "size of the safetensors files save_pretrained would write, computed from the dtypes and shapes of "
        "the tensors it saves (headers built as safetensors does; nothing written)"
    )

    def stop(self, run: RunContext) -> Measurement:
        import torch

        try:
            return self.measurement(saved_bytes(run.model) / 1e6, method=self.method)
        except Exception as err:  # NotComputable, or transformers refusing the state dict: writing decides
            why = str(err) if isinstance(err, NotComputable) else type(err).__name__
        try:
            with tempfile.TemporaryDirectory() as folder:
                run.model.save_pretrained(folder)
                size = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
            method = f"safetensors files written by save_pretrained (size not computable: {why})"
            return self.measurement(size / 1e6, method=method)
        except Exception as err:  # packed int8 or tensor subclasses safetensors cannot hold
            buffer = io.BytesIO()
            torch.save(run.model.state_dict(), buffer)
            reason = f"safetensors cannot store it: {type(err).__name__}"
            return self.measurement(buffer.tell() / 1e6, method=f"torch.save of the state dict ({reason})")


class ApplyTime(Metric):
    """One-off cost of applying the technique (compilation, quantization, loading a draft model)."""

    name = "apply_time"
    unit = "s"
    resource = "computation"
    higher_is_better = False
    scope = "run"
    description = "Wall-clock seconds of Technique.apply (and generation_kwargs), paid once per model."
    quantities = (Quantity(name, unit, resource, False, description, header="Apply (s)", digits=2),)

    def stop(self, run: RunContext) -> Measurement:
        method = "wall clock around Technique.apply of every technique of the stack"
        return self.measurement(run.apply_seconds, method=method, phase="apply")


def _sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _matmul_flops(input_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """(..., K) @ (K, N) -> (..., N): 2 K FLOPs per output element, whatever the weights' storage."""
    return 2 * math.prod(out_shape) * input_shape[-1]


def extra_flop_formulas() -> dict[Any, Any]:
    """Kernels torch's FlopCounterMode has no formula for: SDPA on CPU, and quantized matmuls (int8, int4)."""
    import torch

    kernels = {
        ("aten", "_scaled_dot_product_flash_attention_for_cpu"): _sdpa_flops,
        ("aten", "_int_mm"): _matmul_flops,
        ("aten", "_weight_int4pack_mm_for_cpu"): _matmul_flops,
        ("quantized", "linear_dynamic"): _matmul_flops,
    }
    found = {}
    for (namespace, op), formula in kernels.items():
        try:
            found[getattr(getattr(torch.ops, namespace), op)] = formula
        except (AttributeError, RuntimeError):  # not built into this torch
            continue
    return found


def forward_flops(model: Any, input_ids: Any, past_key_values: Any = None) -> int:
    """FLOPs of one forward pass as torch's FlopCounterMode counts them (matmuls and attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()) as counter:
        model(input_ids, past_key_values=past_key_values, use_cache=past_key_values is not None)
    return counter.get_total_flops()


class Flops(Metric):
    """FLOPs per prefill token and per decoded token, counted on the evaluated model's real forward passes."""

    name = "flops_prefill"
    unit = "GFLOP/token"
    resource = "computation"
    higher_is_better = False
    scope = "run"
    description = "FLOPs per prompt token (prefill) and per generated token (decode), torch.utils.flop_counter."
    quantities = (
        Quantity(name, unit, resource, False, "FLOPs per prompt token of one prefill forward pass.",
                 header="MFLOP/prefill tok", scale=1e3, digits=2),
        Quantity("flops_decode", unit, resource, False, "FLOPs of one decode step (one generated token).",
                 header="MFLOP/decode tok", scale=1e3, digits=2),
    )  # fmt: skip
    method = (
        "torch.utils.flop_counter on one forward pass ({prompt}-token prompt; decode after it), plus formulas "
        "for SDPA's CPU kernel and int8/int4 matmuls; counts matmuls and attention (causal masking not "
        "discounted), not element-wise ops; the target model only (not a draft model)"
    )

    def stop(self, run: RunContext) -> list[Measurement]:
        import torch

        from effbench.measure.scenarios import prompts

        prompt = run.settings.get("prompt_tokens", 32)
        ids = torch.tensor(prompts(run.tokenizer, 1, prompt), device=next(run.model.parameters()).device)
        prefill = forward_flops(run.model, ids)
        with torch.inference_mode():
            cache = run.model(ids, use_cache=True).past_key_values
        decode = forward_flops(run.model, ids[:, -1:], cache)
        method = self.method.format(prompt=prompt)
        return [
            self.measurement(prefill / prompt / 1e9, method=method),
            self.measurement(decode / 1e9, "flops_decode", method=method),
        ]


@hookimpl
def register_metrics(register):
    for metric in (Accuracy(), Parameters(), WeightBytes(), DiskBytes(), Flops(), ApplyTime()):
        register(metric)
