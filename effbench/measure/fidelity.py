"""Fidelity: how far a run's next-token distributions are from the baseline's, on a fixed text sample.

The baseline run of a model summarises its own next-token distribution at every position of the
sample into a *reference* (the ``top_k`` most likely tokens' log-probabilities and the log of the
mass left outside them); every run of that model is compared with it. With a vocabulary of at
most ``top_k`` tokens the reference holds the full distribution and the KL divergence is exact;
otherwise it is the KL between the two distributions coarsened to the baseline's top-k tokens plus
one "rest" bucket, a lower bound of the full KL (data-processing inequality: coarsening a pair of
distributions never increases their divergence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEQUENCES = 16  # micro-world texts; the CI is a bootstrap over them
MAX_TOKENS = 128  # tokens per text, fewer when the model's context is shorter
TOP_K = 64  # tokens per position kept in a reference of a larger vocabulary
TEXT_SEED = 20240515  # the sample's micro-world sentences (scenarios.prompt_stream with this seed)
FORMAT = "effbench-fidelity-reference"
FORMAT_VERSION = 1
# What a reference depends on besides the model and where it runs: part of the key it is stored under.
SAMPLE = {"format": FORMAT_VERSION, "sequences": SEQUENCES, "tokens": MAX_TOKENS, "top_k": TOP_K, "seed": TEXT_SEED}
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


@dataclass(frozen=True)
class Summary:
    """Next-token distributions at each position, kept as their top-k tokens plus the log-mass of the rest."""

    top_ids: Any  # (..., k) int64, most likely first
    top_logprobs: Any  # (..., k) float32
    rest_logprob: Any  # (...) float32; -inf when the k tokens are the whole vocabulary

    def tensors(self) -> dict[str, Any]:
        """The summary's tensors by field name (how a reference file stores them)."""
        return {"top_ids": self.top_ids, "top_logprobs": self.top_logprobs, "rest_logprob": self.rest_logprob}

    def __getitem__(self, index: int) -> Summary:
        """The summary of one sequence of a stacked summary."""
        return Summary(self.top_ids[index], self.top_logprobs[index], self.rest_logprob[index])


def summarize(logprobs: Any, top_k: int = TOP_K) -> Summary:
    """The top-k summary of log-probabilities (..., vocabulary); the whole distribution when ``top_k`` covers it."""
    import torch

    k = min(top_k, logprobs.shape[-1])
    top = torch.topk(logprobs, k, dim=-1)
    return Summary(top.indices, top.values, _rest_logprob(logprobs, top.indices))


def _rest_logprob(logprobs: Any, top_ids: Any) -> Any:
    """log of the probability outside ``top_ids``, summed in log space (1 − Σ top loses it to cancellation)."""
    import torch

    outside = logprobs.scatter(-1, top_ids, float("-inf"))
    return torch.logsumexp(outside, dim=-1)


def kl_from_summary(reference: Summary, logprobs: Any) -> Any:
    """KL(reference ‖ q) per position over the reference's top-k tokens plus one bucket for the rest, in float64.

    Exact (to rounding) when the summary holds the whole vocabulary; a lower bound of the full KL otherwise.
    """
    import torch

    log_p = reference.top_logprobs.double()
    log_q = logprobs.gather(-1, reference.top_ids).double()
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    rest_p = reference.rest_logprob.double()
    rest_q = _rest_logprob(logprobs, reference.top_ids).double()
    rest = torch.where(torch.isinf(rest_p), 0.0, rest_p.exp() * (rest_p - rest_q))  # no mass left: no term
    # KL is never negative; float32 log-softmax rounding leaves nearly equal distributions ~1e-9 below 0
    return (kl + rest).clamp_min(0.0)


def top1(logprobs: Any, top_k: int = TOP_K) -> Any:
    """The most likely token at each position, chosen exactly as ``summarize`` ranks them (ties alike)."""
    import torch

    return torch.topk(logprobs, min(top_k, logprobs.shape[-1]), dim=-1).indices[..., 0]


@dataclass(frozen=True)
class Reference:
    """The baseline's summarised distributions on the sample's token ids: what its model's runs are compared with."""

    input_ids: Any  # (sequences, tokens) int64
    summary: Summary  # (sequences, tokens, k)
    vocabulary: int

    @property
    def exact(self) -> bool:
        """Whether the reference holds the whole distribution (KL exact) rather than its top-k."""
        return self.summary.top_ids.shape[-1] >= self.vocabulary

    def to_bytes(self) -> bytes:
        """The reference as a safetensors file's bytes (what the results store keeps)."""
        from safetensors.torch import save

        tensors = {"input_ids": self.input_ids, **self.summary.tensors()}
        tensors["top_ids"] = tensors["top_ids"].int()  # half the bytes; read back as int64 for indexing
        meta = {"format": FORMAT, "version": str(FORMAT_VERSION), "vocabulary": str(self.vocabulary),
                "sample": json.dumps(SAMPLE, sort_keys=True)}  # fmt: skip
        return save({k: v.contiguous().cpu() for k, v in tensors.items()}, metadata=meta)

    @classmethod
    def read(cls, path: Path) -> Reference:
        """A stored reference; ValueError naming what is wrong when the file is not one this effbench wrote."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                if meta.get("format") != FORMAT or meta.get("version") != str(FORMAT_VERSION):
                    raise ValueError(f"{path.name} is not an effbench fidelity reference of format {FORMAT_VERSION}")
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - not a dict
            summary = Summary(tensors["top_ids"].long(), tensors["top_logprobs"], tensors["rest_logprob"])
            return cls(tensors["input_ids"], summary, int(meta["vocabulary"]))
        except (SafetensorError, OSError, KeyError) as err:
            raise ValueError(f"{path.name} is unreadable ({err})") from None


def context_length(model: Any) -> int:
    """The longest input the model's config allows (``MAX_TOKENS`` when it does not say)."""
    config = getattr(model, "config", None)
    sizes = [getattr(config, key, None) for key in CONTEXT_KEYS]
    return next((size for size in sizes if isinstance(size, int) and size > 0), MAX_TOKENS)


def sample_ids(model: Any, tokenizer: Any) -> list[list[int]]:
    """The fixed text sample in the run's tokens: ``SEQUENCES`` micro-world texts of up to ``MAX_TOKENS`` tokens."""
    from effbench.measure.scenarios import prompts

    return prompts(tokenizer, SEQUENCES, min(MAX_TOKENS, context_length(model)), seed=TEXT_SEED)


def next_token_logprobs(model: Any, input_ids: Any) -> Any:
    """log-softmax of the model's logits for one sequence, in float32 whatever the model's dtype or quantization."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=input_ids[None].to(device), use_cache=False).logits[0]
    return torch.log_softmax(logits.float().cpu(), dim=-1)


def build(model: Any, tokenizer: Any, top_k: int = TOP_K) -> Reference:
    """The model's reference on the fixed sample (the baseline run builds it)."""
    import torch

    input_ids = torch.tensor(sample_ids(model, tokenizer), dtype=torch.int64)
    summaries, vocabulary = [], 0
    for ids in input_ids:  # one sequence at a time: a large vocabulary's full log-probs are never all kept
        logprobs = next_token_logprobs(model, ids)
        vocabulary = logprobs.shape[-1]
        summaries.append(summarize(logprobs, top_k).tensors())
    stacked = Summary(**{name: torch.stack([s[name] for s in summaries]) for name in summaries[0]})
    return Reference(input_ids, stacked, vocabulary)


@dataclass(frozen=True)
class Comparison:
    """Per-sequence figures of a run against a reference: mean KL per token and top-1 agreement."""

    kl: list[float]  # mean KL (nats/token) of each sequence
    agreement: list[float]  # fraction of each sequence's positions whose most likely token is the baseline's
    positions: int


def compare(model: Any, reference: Reference) -> Comparison:
    """The model's distributions on the reference's token ids against the reference's (ValueError: incomparable)."""
    kl, agreement = [], []
    for index, ids in enumerate(reference.input_ids):
        logprobs = next_token_logprobs(model, ids)
        if logprobs.shape[-1] != reference.vocabulary:
            raise ValueError(f"the model has {logprobs.shape[-1]} output tokens, the reference {reference.vocabulary}")
        summary = reference.summary[index]
        kl.append(kl_from_summary(summary, logprobs).mean().item())
        same = top1(logprobs, summary.top_ids.shape[-1]) == summary.top_ids[..., 0]
        agreement.append(same.double().mean().item())
    return Comparison(kl, agreement, reference.input_ids.numel())
