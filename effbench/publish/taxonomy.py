"""The resource–technique taxonomy: every registered technique plus the survey's technique families, as a table.

The families follow the survey (arXiv:2401.00625) and the categories of its public companion list,
Awesome-Resource-Efficient-LLM-Papers; plugins add the techniques effbench can actually run.
"""

from __future__ import annotations

from dataclasses import dataclass

from effbench.plugins import Registry
from effbench.records import TaxonomyRow

SURVEY = "https://arxiv.org/abs/2401.00625"


@dataclass(frozen=True)
class Family:
    """A family of techniques from the survey's map: where it acts, what it saves, where to read about it."""

    name: str
    stage: str
    resources: tuple[str, ...]
    category: str
    description: str
    references: tuple[str, ...]


def _arxiv(*ids: str) -> tuple[str, ...]:
    return tuple(f"https://arxiv.org/abs/{i}" for i in ids)


ARCH = "LLM Architecture Design"
PRE = "LLM Pre-Training"
FT = "LLM Fine-Tuning"
INF = "LLM Inference"
SYS = "System Design"
SECTIONS = {"architecture": ARCH, "pretraining": PRE, "finetuning": FT, "inference": INF, "system": SYS}

FAMILIES = (
    Family("hardware-aware attention", "architecture", ("computation", "memory"),
           f"{ARCH} > Efficient Transformer Architecture",
           "Exact attention computed in tiles that fit fast on-chip memory (FlashAttention).",
           _arxiv("2205.14135", "2307.08691")),
    Family("approximate attention", "architecture", ("computation", "memory"),
           f"{ARCH} > Efficient Transformer Architecture",
           "Linear, sparse or hashed attention that avoids the quadratic cost in sequence length.",
           _arxiv("2006.16236", "2001.04451")),
    Family("multi-query / grouped-query attention", "architecture", ("memory", "computation"),
           f"{ARCH} > Efficient Transformer Architecture",
           "Key/value heads shared between query heads: a smaller KV cache and faster decoding.",
           _arxiv("1911.02150", "2305.13245")),
    Family("mixture of experts", "architecture", ("computation", "energy"),
           f"{ARCH} > Non-transformer Architecture",
           "Sparsely activated expert layers: more parameters for the same compute per token.",
           _arxiv("1701.06538", "2101.03961")),
    Family("non-transformer sequence models", "architecture", ("computation", "memory"),
           f"{ARCH} > Non-transformer Architecture",
           "State-space, recurrent and convolutional language models with linear-time generation.",
           _arxiv("2312.00752", "2305.13048", "2302.10866")),
    Family("distributed training", "pretraining", ("memory", "computation", "network"),
           f"{PRE} > Memory Efficiency > Distributed Training",
           "Data, tensor and pipeline parallelism and sharded optimizer states across devices.",
           _arxiv("1910.02054", "1909.08053", "1811.06965")),
    Family("mixed precision training", "pretraining", ("memory", "computation", "energy"),
           f"{PRE} > Memory Efficiency > Mixed Precision Training",
           "16-bit arithmetic with fp32 master weights and loss scaling.",
           _arxiv("1710.03740")),
    Family("gradient checkpointing", "pretraining", ("memory",),
           f"{PRE} > Memory Efficiency",
           "Recompute activations in the backward pass instead of storing them.",
           _arxiv("1604.06174")),
    Family("importance sampling / data pruning", "pretraining", ("computation", "energy", "money"),
           f"{PRE} > Data Efficiency > Importance Sampling",
           "Train on the examples that matter most and skip redundant ones.",
           _arxiv("2206.14486", "2107.07075")),
    Family("data augmentation", "pretraining", ("computation", "money"),
           f"{PRE} > Data Efficiency > Data Augmentation",
           "Synthesise training examples to reach the same quality with less collected data.",
           _arxiv("2205.15677")),
    Family("efficient training objectives", "pretraining", ("computation",),
           f"{PRE} > Data Efficiency > Training Objective",
           "Objectives such as masking that extract more signal per training token.",
           _arxiv("2111.06377", "1905.02450")),
    Family("parameter-efficient fine-tuning", "finetuning", ("memory", "computation", "money"),
           f"{FT} > Parameter-Efficient Fine-Tuning",
           "Train a small set of added or selected parameters (LoRA, adapters, BitFit) instead of all.",
           _arxiv("2106.09685", "1902.00751", "2106.10199", "2305.14314")),
    Family("memory-efficient full fine-tuning", "finetuning", ("memory", "computation"),
           f"{FT} > Full-Parameter Fine-Tuning",
           "Update every parameter with fused or zeroth-order optimizers that need little memory.",
           _arxiv("2306.09782", "2305.17333")),
    Family("unstructured pruning", "inference", ("memory", "computation"),
           f"{INF} > Model Compression > Pruning",
           "Zero individual weights by magnitude or reconstruction error; needs sparse kernels to run faster.",
           _arxiv("1506.02626", "2301.00774", "2306.11695")),
    Family("semi-structured (N:M) sparsity", "inference", ("computation", "memory"),
           f"{INF} > Model Compression > Pruning",
           "N zeros in every M consecutive weights (2:4), which sparse tensor cores accelerate.",
           _arxiv("2104.08378")),
    Family("structured pruning", "inference", ("memory", "computation", "energy"),
           f"{INF} > Model Compression > Pruning",
           "Remove heads, channels, rows or whole layers (depth pruning): dense and smaller.",
           _arxiv("2305.11627", "2401.15024", "2403.03853")),
    Family("weight quantization", "inference", ("memory", "computation", "energy"),
           f"{INF} > Model Compression > Quantization",
           "Store weights in 8, 4 or fewer bits (GPTQ, AWQ, LLM.int8()).",
           _arxiv("2210.17323", "2306.00978", "2208.07339")),
    Family("activation quantization", "inference", ("memory", "computation"),
           f"{INF} > Model Compression > Quantization",
           "Quantize activations as well so matrix products run in integer arithmetic.",
           _arxiv("2211.10438")),
    Family("knowledge distillation", "inference", ("memory", "computation"),
           f"{INF} > Model Compression",
           "Train a smaller student to imitate a larger teacher's outputs.",
           _arxiv("1503.02531", "2306.08543")),
    Family("speculative / assisted decoding", "inference", ("computation", "energy"),
           f"{INF} > Dynamic Acceleration",
           "A cheap draft proposes tokens the large model verifies in one pass; outputs are unchanged.",
           _arxiv("2211.17192", "2302.01318")),
    Family("KV-cache compression", "inference", ("memory",),
           f"{INF} > Dynamic Acceleration",
           "Evict, quantize or window the key/value cache to bound its memory.",
           _arxiv("2306.14048", "2309.17453", "2402.02750")),
    Family("early exit", "inference", ("computation",),
           f"{INF} > Dynamic Acceleration",
           "Stop computing layers for a token once an intermediate prediction is confident.",
           _arxiv("2207.07061", "2004.12993")),
    Family("input (token) pruning", "inference", ("computation",),
           f"{INF} > Dynamic Acceleration > Input Pruning",
           "Drop or merge uninformative tokens as they pass through the layers.",
           _arxiv("2107.00910")),
    Family("contextual sparsity", "inference", ("computation",),
           f"{INF} > Dynamic Acceleration",
           "Predict per input which heads and neurons matter and skip the rest.",
           _arxiv("2310.17157")),
    Family("compilation", "system", ("computation",),
           f"{SYS} > Deployment Optimization",
           "Graph capture, operator fusion and generated kernels for the target hardware.",
           _arxiv("1802.04799")),
    Family("batching and paged KV memory", "system", ("computation", "memory", "money"),
           f"{SYS} > Deployment Optimization",
           "Continuous batching of requests with paged key/value memory for high throughput.",
           _arxiv("2309.06180")),
    Family("offloading", "system", ("memory", "money"),
           f"{SYS} > Deployment Optimization",
           "Keep weights and cache in CPU memory or disk and stream them to the accelerator.",
           _arxiv("2303.06865", "2207.00032")),
    Family("collaborative inference", "system", ("money", "network"),
           f"{SYS} > Deployment Optimization",
           "Serve one model across many volunteers' machines over the internet.",
           _arxiv("2209.01188")),
    Family("communication compression", "system", ("network", "computation"),
           f"{SYS} > Support Infrastructure",
           "Compress gradients or activations exchanged between devices (low-rank, 1-bit).",
           _arxiv("1905.13727", "2102.02888")),
    Family("on-device deployment", "system", ("memory", "energy"),
           f"{SYS} > Support Infrastructure",
           "Models and runtimes shaped for phones and edge devices.",
           _arxiv("2202.07959")),
)  # fmt: skip


def taxonomy_rows(reg: Registry) -> list[TaxonomyRow]:
    """Rows for every registered technique (what effbench can run) and every survey family (the map)."""
    rows = []
    for name, technique in sorted(reg.techniques.items()):
        origin = reg.origins[("technique", name)]
        description = technique.description or (type(technique).__doc__ or "").strip()
        as_family = Family(name, technique.stage, technique.resources, SECTIONS[technique.stage], description,
                           technique.references)  # fmt: skip
        rows.append(_row(as_family, "technique", f"{origin.distribution} {origin.version}"))
    return rows + [_row(family, "family", f"survey {SURVEY}") for family in FAMILIES]


def _row(entry: Family, kind: str, source: str) -> TaxonomyRow:
    return TaxonomyRow(
        name=entry.name,
        kind=kind,
        stage=entry.stage,
        resources=list(entry.resources),
        description=entry.description,
        references=list(entry.references),
        category=entry.category,
        source=source,
    )
