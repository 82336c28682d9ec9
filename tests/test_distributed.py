"""Distributed training runs: ranks started by effbench on gloo, bytes counted at every collective, windows combined."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

import tests.rank_targets as targets
from effbench import network
from effbench.api.context import Measurement
from effbench.api.training import Communication
from effbench.config.suite import load_suite, parse_short
from effbench.default_plugins.executors import InlineExecutor
from effbench.errors import EffbenchError
from effbench.measure.windows import Instruments
from effbench.modeling import decoder_layers
from effbench.plugins import registry
from effbench.reference import families, zoo
from effbench.run.launch import free_port, run_ranks
from effbench.run.sweep import check_parameters, resolve_placement, run_suite
from effbench.store.load import load
from effbench.train.distributed import Parallel, counting_collectives
from tests.conftest import QUICK_SCENARIO
from tests.training_helpers import training_suite

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4
TRAINING = {"ranks": 2, "steps": STEPS, "batch_size": 4, "max_length": 32, "target_loss": 50.0}  # met at once
# ddp-bf16 needs NCCL (cuda)
EXCHANGES = ["ddp-allreduce", "ddp-fp16", "ddp-powersgd:rank=1", "ddp-zero", "fsdp", "fsdp:reshard=false"]


@pytest.fixture(autouse=True, scope="module")
def ranks_import_the_tests():
    """Ranks are new interpreters: they find ``tests.rank_targets`` as the test process does."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        yield


def test_ranks_form_one_gloo_group_with_torchruns_environment():
    results = run_ranks(2, "cpu", targets.sum_ranks, "job")
    assert [r["rank"] for r in results] == [0, 1] and {r["sum"] for r in results} == {3.0}  # 1 + 2, on both
    assert [r["env"]["RANK"] for r in results] == ["0", "1"] and {r["env"]["WORLD_SIZE"] for r in results} == {"2"}
    assert {r["env"]["MASTER_ADDR"] for r in results} == {"127.0.0.1"} and results[0]["job"] == "job"


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL ranks need two GPUs")
def test_ranks_on_gpus_form_one_nccl_group_one_gpu_each():
    results = run_ranks(2, "cuda", targets.sum_ranks, "job")
    assert {r["sum"] for r in results} == {3.0}


@pytest.mark.parametrize(("how", "error"), [("raise", "RuntimeError: rank one is broken on purpose"),
                                            ("kill", "died (SIGKILL)")])  # fmt: skip
def test_a_failing_rank_fails_the_run_with_its_error_and_no_rank_is_left(tmp_path, how, error):
    with pytest.raises(EffbenchError) as failed:
        run_ranks(2, "cpu", targets.fail_on_rank_one, (str(tmp_path), how))
    assert str(failed.value) == f"rank 1 of 2 failed: {error}"
    rank0 = int((tmp_path / "pid-0").read_text())  # it was waiting in a barrier for rank 1
    with pytest.raises(ProcessLookupError):
        os.kill(rank0, 0)


def test_every_collective_is_counted_at_its_call_and_torch_is_restored_after():
    import torch.distributed as dist

    original = dist.all_reduce
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        before = network.recorded()["collective"]
        with counting_collectives():
            dist.all_reduce(torch.ones(10, dtype=torch.float32))  # 40 bytes
            dist.broadcast(tensor=torch.ones(3, dtype=torch.float16), src=0)  # 6 bytes, as a keyword
            dist.all_reduce(torch.ones(5, dtype=torch.bfloat16), async_op=True).wait()  # 10 bytes
        dist.all_reduce(torch.ones(100))  # after: not counted
        assert network.recorded()["collective"] - before == 56
        assert dist.all_reduce is original
    finally:
        dist.destroy_process_group()


def test_fsdp_refuses_an_optimizer_that_cannot_update_its_shards_before_sharding():
    import torch.distributed as dist
    from transformers.optimization import Adafactor

    model, _ = zoo.load("zoo:micro-s")
    before = {name: p for name, p in model.named_parameters()}
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        optimizer = Adafactor(model.parameters(), lr=1e-3, scale_parameter=False, relative_step=False)
        refusal = r"^fsdp shards the parameters as DTensors, which transformers\.optimization\.Adafactor cannot update"
        with pytest.raises(EffbenchError, match=refusal):
            Parallel(0, 1, "cpu").prepare(model, optimizer, Communication(shard_parameters=True))
    finally:
        dist.destroy_process_group()
    assert {name: p for name, p in model.named_parameters()} == before  # nothing was sharded


def test_ranks_windows_combine_by_each_quantitys_declared_rule():
    instruments = Instruments(list(registry().metrics.values()))

    def rank(peak: float, energy: float, loss: float) -> list[Measurement]:
        return [
            Measurement("peak_memory", peak, "MiB", "memory", False, method="VmHWM", phase="train"),
            Measurement("energy", energy, "kWh", "energy", False, phase="train"),
            Measurement("train_loss", loss, "nats/token", "quality", False, phase="train", step=0),
        ]

    combined = {m.metric: m for m in instruments.combine_ranks([rank(500, 1e-6, 2.0), rank(620, 3e-6, 3.0)])}
    assert combined["peak_memory"].value == 620 and combined["energy"].value == pytest.approx(4e-6)
    assert combined["train_loss"].value == 2.5 and combined["train_loss"].step == 0
    assert combined["peak_memory"].method == "VmHWM; max over 2 ranks (each: 500, 620)"


@pytest.mark.parametrize(
    ("techniques", "training", "message"),
    [
        (["finetune-full + ddp-fp16"], {}, "technique 'ddp-fp16' needs training.ranks >= 2"),
        (["ddp-fp16"], {"ranks": 2}, "'ddp-fp16' chooses how ranks exchange gradients and trains nothing itself"),
        (["finetune-full + ddp-fp16 + ddp-zero"], {"ranks": 2}, "'ddp-fp16' and 'ddp-zero' both choose"),
        (["finetune-full + fsdp"], {}, "technique 'fsdp' needs training.ranks >= 2"),
        (["fsdp"], {"ranks": 2}, "'fsdp' chooses how ranks exchange gradients and trains nothing itself"),
        (["finetune-full + ddp-zero + fsdp"], {"ranks": 2}, "'ddp-zero' and 'fsdp' both choose"),
    ],
)
def test_a_technique_exchanging_gradients_needs_ranks_and_a_training_technique(techniques, training, message):
    suite = load_suite(None, techniques=techniques, training=training)
    with pytest.raises(EffbenchError, match=message):
        check_parameters(suite, registry())


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"ranks": 2, "batch_size": 5}, "batch_size 5 is not a multiple of ranks 2"),
        ({"ranks": 2, "tokens": 500}, "a distributed training's budget is given in steps"),
        ({"ranks": 0}, "training.ranks: Input should be greater than or equal to 1"),
    ],
)
def test_bad_rank_settings_are_one_line(training, message):
    with pytest.raises(EffbenchError, match=message) as err:
        load_suite(None, techniques=["finetune-full"], training=training)
    assert len(str(err.value).splitlines()) <= 2


def test_more_ranks_than_the_machine_has_cores_is_refused_before_any_run(tmp_path):
    cores = os.cpu_count()
    suite = load_suite(
        None, techniques=["finetune-full"], training={"ranks": cores + 1, "batch_size": cores + 1}, output=str(tmp_path)
    )
    stacks = check_parameters(suite, registry())
    message = f"training.ranks is {cores + 1}, but this machine has {cores} cpu cores; ranks: 1 to {cores}"
    with pytest.raises(EffbenchError, match=message):
        resolve_placement(suite, registry(), stacks, "cpu")
    with pytest.raises(EffbenchError, match=message):
        run_suite(suite, executor=InlineExecutor())
    assert not (tmp_path / "runs").exists()


def _run(store, exchange: str):
    """The run of ``finetune-full + exchange`` (its parameters as written, the others at their defaults)."""
    short = parse_short(exchange)
    params = registry().technique(short["name"]).validate(short["params"])
    return next(
        r
        for r in store.runs
        if r.technique == f"finetune-full+{short['name']}" and json.loads(r.technique_params)[short["name"]] == params
    )


def _train(store, exchange: str) -> dict[str, Measurement]:
    run = _run(store, exchange)
    return {m.metric: m for m in store.measurements_of(run.run_id) if m.in_phase == "train" and m.step is None}


@pytest.fixture(scope="module")
def distributed_store(tmp_path_factory):
    """micro-s fine-tuned on 2 gloo ranks with each gradient exchange, evaluated like any run, in this process."""
    output = tmp_path_factory.mktemp("distributed")
    suite = training_suite([f"finetune-full + {exchange}" for exchange in EXCHANGES], TRAINING, output)
    result = run_suite(suite, executor=InlineExecutor())
    assert result.failed == {}, result.failed
    return load(output)


def _gradient_bytes() -> int:
    model, _ = zoo.load("zoo:micro-s")
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def _powersgd_bytes(rank: int) -> int:
    """Per rank and compressed step, the hook's own rule: P (n×r) and Q (m×r) per matrix it shrinks 2-fold."""
    model, _ = zoo.load("zoo:micro-s")
    elements = 0
    for p in model.parameters():
        n = p.shape[0]
        m = p.numel() // n
        r = min(n, m, rank)
        elements += (n + m) * r if (n + m) * r * 2 < n * m else n * m
    return elements * 4


def test_plain_all_reduce_sends_the_gradients_bytes_every_step(distributed_store):
    train = _train(distributed_store, "ddp-allreduce")
    per_step = train["train_bytes_communicated_per_step"].value * 1e3
    assert per_step == pytest.approx(2 * _gradient_bytes(), rel=0.01)  # each of the 2 ranks hands over every gradient
    assert train["train_bytes_communicated"].value == pytest.approx(STEPS * per_step / 1e3)
    assert "sum over 2 ranks" in train["train_bytes_communicated"].method


def test_fp16_compression_halves_the_bytes_per_step(distributed_store):
    plain = _train(distributed_store, "ddp-allreduce")["train_bytes_communicated_per_step"].value
    assert _train(distributed_store, "ddp-fp16")["train_bytes_communicated_per_step"].value == pytest.approx(
        plain / 2, rel=0.02
    )


def test_bf16_compression_is_refused_on_cpu_before_any_run():
    suite = load_suite(None, techniques=["finetune-full + ddp-bf16"], training=TRAINING)
    stacks = check_parameters(suite, registry())
    with pytest.raises(EffbenchError, match="technique 'ddp-bf16' has no kernels for device 'cpu'; it runs on: cuda"):
        resolve_placement(suite, registry(), stacks, "cpu")


def test_powersgd_sends_its_rank_r_factors_once_compression_starts(distributed_store):
    total = _train(distributed_store, "ddp-powersgd")["train_bytes_communicated"].value * 1e3
    expected = 2 * (2 * _gradient_bytes() + (STEPS - 2) * _powersgd_bytes(1))  # 2 ranks; steps 0 and 1 uncompressed
    assert total == pytest.approx(expected, rel=0.01)
    assert total < 2 * STEPS * _gradient_bytes()  # it did compress


def test_zero_adds_the_broadcast_of_every_updated_parameter_and_keeps_half_the_state(distributed_store):
    plain, zero = _train(distributed_store, "ddp-allreduce"), _train(distributed_store, "ddp-zero")
    per_step = "train_bytes_communicated_per_step"
    assert zero[per_step].value == pytest.approx(2 * plain[per_step].value, rel=0.01)
    assert zero["optimizer_state_size"].value == pytest.approx(plain["optimizer_state_size"].value / 2, rel=0.01)


def _shard_bytes(params: list[torch.nn.Parameter], ranks: int = 2) -> int:
    """Bytes of one rank's shard of ``params`` under FSDP2: each parameter's first dimension split in ``ranks``,
    padded to equal chunks."""
    return sum(math.ceil(p.shape[0] / ranks) * (p.numel() // p.shape[0]) * p.element_size() for p in params)


def _fsdp_bytes(params: list[torch.nn.Parameter], reshard: bool) -> int:
    """Per rank and step, FSDP2's own rule on 2 ranks: every unit's shard all-gathered for forward (again for
    backward when it reshards), every padded gradient reduce-scattered whole, and the gradient norm's all-reduce
    (one float32 per parameter)."""
    shards = _shard_bytes(params)
    return shards * (2 if reshard else 1) + 2 * shards + 4 * len(params)


@pytest.mark.parametrize(("exchange", "reshard"), [("fsdp", True), ("fsdp:reshard=false", False)])
def test_fsdp_gathers_each_shard_per_pass_and_reduce_scatters_the_gradients(distributed_store, exchange, reshard):
    model, _ = zoo.load("zoo:micro-s")
    train = _train(distributed_store, exchange)
    per_step = train["train_bytes_communicated_per_step"].value * 1e3
    assert per_step == pytest.approx(2 * _fsdp_bytes(list(model.parameters()), reshard), rel=1e-9)  # exactly
    assert train["train_bytes_communicated"].value == pytest.approx(STEPS * per_step / 1e3)


def test_fsdp_trains_the_model_ddp_trains_with_half_the_optimizer_state(distributed_store):
    ddp, fsdp = _train(distributed_store, "ddp-allreduce"), _train(distributed_store, "fsdp")
    assert fsdp["final_train_loss"].value == pytest.approx(ddp["final_train_loss"].value, rel=1e-5)
    assert fsdp["optimizer_state_size"].value == pytest.approx(ddp["optimizer_state_size"].value / 2, rel=0.01)
    assert fsdp["checkpoint_size"].value == ddp["checkpoint_size"].value  # the whole trained model, gathered

    def kl(exchange: str) -> float:
        rows = distributed_store.measurements_of(_run(distributed_store, exchange).run_id)
        return next(m.value for m in rows if m.metric == "kl_divergence")

    assert kl("fsdp") == pytest.approx(kl("ddp-allreduce"), rel=1e-3) and kl("fsdp") > 0


@pytest.fixture(scope="module")
def fsdp_on_families():
    """One FSDP2 step of every family's tiny model on 2 gloo ranks, then its gather: each rank's account."""
    return run_ranks(2, "cpu", targets.fsdp_step_on_families, list(families.FAMILIES))


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_fsdp_shards_every_familys_blocks_and_gathers_the_trained_model_whole(fsdp_on_families, family):
    rank0, rank1 = (outcome[family] for outcome in fsdp_on_families)
    model, _ = families.build(family)
    params = dict(model.named_parameters())
    assert rank0["units"] == rank0["blocks"] + 1 == len(decoder_layers(model)) + 1  # each block, then the rest
    for name, p in params.items():  # each rank keeps its share of every parameter's rows, and only that
        assert rank0["local"][name] == math.ceil(p.shape[0] / 2) * (p.numel() // p.shape[0])
        assert rank0["local"][name] + rank1["local"][name] == p.numel()
    assert rank0["bytes"] == rank1["bytes"] == _fsdp_bytes(list(params.values()), reshard=True)
    assert rank0["calls"] == rank0["collectives"] > 0  # torch's own count: every collective of the step was counted
    assert rank0["plain"] and rank0["finite"] and rank0["still_tied"] == rank0["tied"]
    assert {name: t.shape for name, t in rank0["gathered"].items()} == {name: p.shape for name, p in params.items()}
    assert all(torch.equal(rank0["gathered"][name], rank1["gathered"][name]) for name in params)  # one model
    assert any(not torch.equal(rank0["gathered"][name], p.detach()) for name, p in params.items())  # trained


def test_every_distributed_run_reports_its_training_and_the_trained_models_accuracy(distributed_store):
    for exchange in EXCHANGES:
        run = _run(distributed_store, exchange)
        assert run.status == "ok" and json.loads(run.settings)["training"]["ranks"] == 2
        rows = distributed_store.measurements_of(run.run_id)
        train = {m.metric: m for m in rows if m.in_phase == "train" and m.step is None}
        assert {"train_time", "final_train_loss", "peak_memory", "energy"} <= set(train)
        assert "max over 2 ranks" in train["peak_memory"].method and "sum over 2 ranks" in train["energy"].method
        assert "max over 2 ranks" in train["peak_memory_increase"].method
        assert train["steps_to_target_loss"].value == 1  # the first step's loss is below 50
        to_target = train["energy_to_target_loss"]  # the ranks' summed energy × the share of their time until then
        assert 0 < to_target.value < train["energy"].value and "sum over 2 ranks" in to_target.method
        assert sorted(m.step for m in rows if m.metric == "train_loss") == list(range(STEPS))
        assert any(m.task == "micro_copy" and m.metric == "exact_match" for m in rows)
        kl = next(m.value for m in rows if m.metric == "kl_divergence")
        assert kl > 0  # rank 0's trained weights are the ones evaluated, not the baseline's


def test_the_same_seed_gives_the_same_distributed_loss_curve(distributed_store, tmp_path):
    suite = training_suite(["finetune-full + ddp-allreduce"], TRAINING, tmp_path, limit=1)
    assert run_suite(suite, executor=InlineExecutor()).failed == {}

    def curve(store) -> list[float]:
        run = next(r for r in store.runs if r.technique == "finetune-full+ddp-allreduce")
        return [m.value for m in sorted(store.measurements_of(run.run_id), key=lambda m: m.step or 0)
                if m.metric == "train_loss"]  # fmt: skip

    assert curve(load(tmp_path)) == curve(distributed_store)


def test_the_distributed_suite_trains_with_every_gradient_exchange_on_two_ranks():
    reg = registry()
    suite = load_suite(ROOT / "suites" / "distributed.yaml")
    used = {entry.name for stack in check_parameters(suite, reg) for entry in stack}
    exchanges = {name for name, technique in reg.techniques.items() if technique.min_ranks > 1}
    assert suite.training.ranks == 2 and exchanges - used == {"ddp-bf16"}  # the one that needs cuda


def _on_two_gpus(exchanges: tuple[str, ...], output: Path):
    """micro-s fine-tuned with each exchange on 2 NCCL ranks (one GPU each): the results store."""
    suite = load_suite(None, models=["zoo:micro-s"], techniques=[f"finetune-full + {t}" for t in exchanges],
                       tasks=["micro_copy"], limit=1, bootstrap_iters=0, scenarios=[QUICK_SCENARIO], training=TRAINING,
                       device="cuda", output=str(output))  # fmt: skip
    assert run_suite(suite, executor=InlineExecutor()).failed == {}
    return load(output)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL ranks need two GPUs")
def test_bf16_compression_halves_the_bytes_per_step_on_two_gpus(tmp_path):
    exchanges = ("ddp-allreduce", "ddp-bf16")
    store = _on_two_gpus(exchanges, tmp_path)
    per_step = {t: _train(store, t)["train_bytes_communicated_per_step"].value for t in exchanges}
    assert per_step["ddp-bf16"] == pytest.approx(per_step["ddp-allreduce"] / 2, rel=0.02)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL ranks need two GPUs")
def test_fsdp_on_two_gpus_sends_by_the_same_rule_as_on_cpu(tmp_path):
    model, _ = zoo.load("zoo:micro-s")
    per_step = _train(_on_two_gpus(("fsdp",), tmp_path), "fsdp")["train_bytes_communicated_per_step"].value * 1e3
    assert per_step == pytest.approx(2 * _fsdp_bytes(list(model.parameters()), reshard=True), rel=1e-9)
