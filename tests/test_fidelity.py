"""Fidelity: KL divergence from the baseline's next-token distributions and top-1 agreement, exact and top-k."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from effbench.measure import fidelity
from effbench.reference.zoo import load as load_model
from effbench.store.load import load
from effbench.store.results import REFERENCES, ResultsStore
from tests.conftest import QUICK_SCENARIO, cli
from tests.technique_helpers import applied

TINY = ["--task", "micro_copy", "--limit", "3", "--scenario", QUICK_SCENARIO]


def _exact_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> np.ndarray:
    """KL(p ‖ q) per row over the whole vocabulary, in numpy float64 (independent of effbench's code)."""
    p, lp, lq = np.exp(log_p.double().numpy()), log_p.double().numpy(), log_q.double().numpy()
    return (p * (lp - lq)).sum(-1)


def _distributions(vocabulary: int, positions: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A peaked baseline and a perturbed run, as float32 log-probabilities (positions, vocabulary)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(positions, vocabulary, generator=gen) * 3
    noisy = logits + torch.randn(positions, vocabulary, generator=gen)
    return torch.log_softmax(logits, -1), torch.log_softmax(noisy, -1)


@pytest.mark.parametrize("vocabulary", [7, 64, 300])
def test_summary_covering_the_vocabulary_gives_the_exact_kl(vocabulary):
    log_p, log_q = _distributions(vocabulary)
    summary = fidelity.summarize(log_p, top_k=max(vocabulary, 64))
    assert torch.isinf(summary.rest_logprob).all()  # nothing left outside
    got = fidelity.kl_from_summary(summary, log_q).numpy()
    np.testing.assert_allclose(got, _exact_kl(log_p, log_q), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("top_k", [1, 4, 32])
def test_top_k_summary_gives_a_lower_bound_of_the_exact_kl(top_k):
    log_p, log_q = _distributions(300, seed=top_k)
    exact = _exact_kl(log_p, log_q)
    approx = fidelity.kl_from_summary(fidelity.summarize(log_p, top_k), log_q).numpy()
    assert (approx >= -1e-9).all()
    assert (approx <= exact + 1e-6).all()
    assert approx.mean() < exact.mean()  # coarsening loses something here: the bound is not trivially equal
    # the rest bucket is the coarsened KL's last term: computed independently from the complement's mass
    top = torch.topk(log_p, top_k, -1).indices
    p, q = log_p.double().exp(), log_q.double().exp()
    p_top, q_top = p.gather(-1, top), q.gather(-1, top)
    p_rest, q_rest = 1 - p_top.sum(-1), 1 - q_top.sum(-1)
    coarse = (p_top * (p_top / q_top).log()).sum(-1) + p_rest * (p_rest / q_rest).log()
    np.testing.assert_allclose(approx, coarse.numpy(), rtol=1e-4, atol=1e-6)


def test_identical_distributions_have_zero_kl_and_agree_everywhere():
    log_p, _ = _distributions(300)
    for k in (5, 300):
        summary = fidelity.summarize(log_p, k)
        assert fidelity.kl_from_summary(summary, log_p).abs().max().item() == 0.0
        assert torch.equal(fidelity.top1(log_p, k), summary.top_ids[..., 0])


@pytest.fixture(scope="module")
def micro_m_reference() -> fidelity.Reference:
    model, tokenizer = load_model("zoo:micro-m")
    return fidelity.build(model, tokenizer)


def _means(model, reference: fidelity.Reference) -> tuple[float, float]:
    comparison = fidelity.compare(model, reference)
    return float(np.mean(comparison.kl)), float(np.mean(comparison.agreement))


def test_baseline_against_its_reference_and_pruned_models_on_micro_m(micro_m_reference, tmp_path):
    reference = micro_m_reference
    assert reference.exact and reference.vocabulary == 46  # micro-m's character vocabulary: the KL is exact
    assert reference.input_ids.shape == (fidelity.SEQUENCES, fidelity.MAX_TOKENS)
    path = tmp_path / "reference.safetensors"
    path.write_bytes(reference.to_bytes())
    stored = fidelity.Reference.read(path)  # what a later run reads
    baseline, _ = load_model("zoo:micro-m")
    assert _means(baseline, stored) == (0.0, 1.0)
    half_kl, half_agree = _means(applied("prune-magnitude", sparsity=0.5)[0], stored)
    pruned_kl, pruned_agree = _means(applied("prune-magnitude", sparsity=0.9)[0], stored)
    assert 0 < half_kl < pruned_kl
    assert pruned_agree < half_agree <= 1 and pruned_agree < 0.9


@pytest.mark.parametrize("technique, params", [("dtype", {"dtype": "bf16"}), ("dynamic-int8", {})])
def test_quantized_and_half_precision_models_are_compared_in_float32(micro_m_reference, technique, params):
    kl, agreement = _means(applied(technique, **params)[0], micro_m_reference)
    assert 0 < kl < 0.05 and 0.9 < agreement <= 1  # small, real damage


def test_another_attention_kernel_differs_by_rounding_only_and_never_below_zero(micro_m_reference):
    """Eager attention computes what SDPA does, in another order: once stored as -4e-10 nats/token, now 0 or above."""
    comparison = fidelity.compare(applied("attention", implementation="eager")[0], micro_m_reference)
    assert all(0 <= kl < 1e-6 for kl in comparison.kl) and np.mean(comparison.agreement) == 1.0


def test_a_generation_only_technique_leaves_the_distributions_alone(micro_m_reference):
    assert _means(applied("prompt-lookup")[0], micro_m_reference) == (0.0, 1.0)


def test_top_k_reference_of_a_real_model_bounds_the_exact_kl_from_below(micro_m_reference):
    model, tokenizer = load_model("zoo:micro-m")
    small = fidelity.build(model, tokenizer, top_k=4)
    assert not small.exact and torch.isfinite(small.summary.rest_logprob).all()
    pruned = applied("prune-magnitude", sparsity=0.9)[0]
    exact, approx = fidelity.compare(pruned, micro_m_reference), fidelity.compare(pruned, small)
    assert all(a <= e + 1e-6 for a, e in zip(approx.kl, exact.kl, strict=True))
    assert 0 < np.mean(approx.kl) < np.mean(exact.kl)
    assert approx.agreement == exact.agreement  # the top token is kept either way


def test_reference_of_another_format_is_refused_with_its_name(tmp_path):
    path = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "something-else"})
    with pytest.raises(ValueError, match=r"other\.safetensors is not an effbench fidelity reference"):
        fidelity.Reference.read(path)


def _figures(out, label: str) -> dict[str, object]:
    results = load(out)
    run = next(r for r in results.runs if r.label == label)
    found = {m.metric: m for m in results.measurements_of(run.run_id)}
    return {"run": run, **{k: found.get(k) for k in ("kl_divergence", "top1_agreement")}}


def test_evaluate_stores_the_reference_and_every_run_reads_it_until_it_is_missing(tmp_path):
    out = tmp_path / "results"
    # the technique listed first: the sweep still runs the baseline before it
    first = cli("evaluate", "--output", str(out), *TINY, "--technique", "prune-magnitude:sparsity=0.9")
    assert first.returncode == 0, first.stderr
    references = list((out / REFERENCES).iterdir())
    assert [p.suffix for p in references] == [".safetensors"]
    base = _figures(out, "baseline")
    base_kl = base["kl_divergence"]
    assert base_kl.value == 0.0 and (base_kl.ci_low, base_kl.ci_high) == (0, 0)
    assert base["top1_agreement"].value == 1.0 and not base["run"].warnings
    assert "exact KL" in base_kl.method and base_kl.unit == "nats/token"
    pruned = _figures(out, "prune-magnitude(scope=layer, sparsity=0.9)")
    kl, agreement = pruned["kl_divergence"], pruned["top1_agreement"]
    assert kl.value > 0.1 and kl.ci_low <= kl.value <= kl.ci_high and not kl.higher_is_better
    assert agreement.value < 0.9 and agreement.ci_low <= agreement.value <= agreement.ci_high
    assert "KL (nats/tok)" in first.stdout  # a column of the report

    check = cli("store", "check", "--results", str(out))
    assert check.returncode == 0 and "0 bad files, 0 leftover files" in check.stdout, check.stdout
    leftover = out / REFERENCES / f".{references[0].name}.{'0' * 32}.tmp"  # an interrupted write's
    leftover.write_bytes(b"partial")
    os.utime(leftover, (time.time() - 3600,) * 2)
    assert ResultsStore(out).leftovers() == [leftover]

    # a later sweep of the same store: the stored baseline is not rerun, its reference is read
    techniques = ["--technique", "prune-magnitude:sparsity=0.9", "--technique", "prune-magnitude:sparsity=0.5"]
    later = cli("evaluate", "--output", str(out), *TINY, "--executor", "inline", *techniques)
    assert later.returncode == 0, later.stderr
    assert not leftover.exists()  # removed when the sweep opened the store
    half = _figures(out, "prune-magnitude(scope=layer, sparsity=0.5)")
    assert 0 < half["kl_divergence"].value < kl.value and half["top1_agreement"].value > agreement.value

    references[0].unlink()  # an older store, or a baseline that failed: no reference
    missing = cli("evaluate", "--output", str(out), *TINY, "--executor", "inline", "--technique", "dynamic-int8")
    assert missing.returncode == 0, missing.stderr
    quantized = _figures(out, "dynamic-int8")
    assert quantized["kl_divergence"] is None and quantized["top1_agreement"] is None
    assert quantized["run"].status == "ok"
    assert any("no fidelity figures" in w and references[0].name in w for w in quantized["run"].warnings)
