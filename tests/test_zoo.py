"""The bundled reference models: name resolution, clear load errors, portable artifacts, real accuracy."""

import json
import shutil

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from effbench.errors import EffbenchError
from effbench.reference import zoo
from effbench.reference.tasks import TASKS_DIR
from effbench.reference.zoo.train import CONTEXT, RECIPES


def test_available_models():
    assert zoo.available() == ["micro-m", "micro-s"]


def test_unknown_zoo_name_lists_the_available_models():
    with pytest.raises(EffbenchError, match=r"unknown zoo model 'zoo:nope'; available: zoo:micro-m, zoo:micro-s"):
        zoo.load("zoo:nope")


def test_plain_paths_pass_through(tmp_path):
    assert zoo.resolve(str(tmp_path)) == str(tmp_path)
    assert zoo.resolve("org/name") == "org/name"


def test_micro_s_is_at_most_a_quarter_of_micro_m():
    small, _ = zoo.load("zoo:micro-s")
    medium, _ = zoo.load("zoo:micro-m")
    n_small = sum(p.numel() for p in small.parameters())
    n_medium = sum(p.numel() for p in medium.parameters())
    assert 1_000_000 <= n_medium <= 5_000_000
    assert n_small * 4 <= n_medium
    assert medium.config.num_key_value_heads < medium.config.num_attention_heads  # grouped-query attention


def test_bundle_is_small_and_complete():
    total = sum(p.stat().st_size for p in zoo.MODELS_DIR.rglob("*") if p.is_file())
    assert total <= 30 * 2**20
    for name in zoo.available():
        folder = zoo.MODELS_DIR / name
        for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"):
            assert (folder / required).is_file(), (name, required)


def test_tokenizer_is_recorded_as_a_class_transformers_4_can_load():
    for name in zoo.available():
        config = json.loads((zoo.MODELS_DIR / name / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
        tokenizer = AutoTokenizer.from_pretrained(zoo.resolve(f"zoo:{name}"))
        assert isinstance(tokenizer, PreTrainedTokenizerFast)
        text = "recall a=1 b=2 ? b=2\n"
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_recipes_share_the_tokenizer():
    files = {(zoo.MODELS_DIR / n / "tokenizer.json").read_text() for n in RECIPES}
    assert len(files) == 1


@pytest.fixture
def model_copy(tmp_path):
    target = tmp_path / "micro-m"
    shutil.copytree(zoo.MODELS_DIR / "micro-m", target)
    return target


def test_missing_weights_fail_clearly(model_copy):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(EffbenchError, match="no safetensors weights"):
        zoo.load(str(model_copy))


def test_corrupted_weights_fail_clearly(model_copy):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(EffbenchError, match="could not be loaded"):
        zoo.load(str(model_copy))


def test_garbage_weights_fail_clearly(model_copy):
    (model_copy / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(EffbenchError, match="could not be loaded"):
        zoo.load(str(model_copy))


def test_context_is_512_tokens_and_was_trained_at_that_length():
    """lm-eval's generative tasks ask for 256 new tokens after their prompt: the models read 512."""
    for name in zoo.available():
        folder = zoo.MODELS_DIR / name
        config = json.loads((folder / "config.json").read_text())
        log = json.loads((folder / "training_log.json").read_text())
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert config["max_position_embeddings"] == tokenizer.model_max_length == CONTEXT >= 512
        extend = log["phases"][-1]
        assert extend["context"] == CONTEXT and extend["tokens_per_step"] == extend["batch"] * CONTEXT


@pytest.mark.parametrize("name", ["micro-m", "micro-s"])
def test_late_positions_are_predicted_as_well_as_early_ones(name):
    """Held-out sentences packed into one 512-token row: positions never trained would lose the thread."""
    model, tokenizer = zoo.load(f"zoo:{name}")
    texts = [json.loads(line)["text"] for line in (TASKS_DIR / "data" / "text.jsonl").read_text().splitlines()]
    ids = [tokenizer.eos_token_id]
    for text in texts:
        ids += [*tokenizer(text + "\n")["input_ids"], tokenizer.eos_token_id]
        if len(ids) > CONTEXT:
            break
    row = torch.tensor([ids[:CONTEXT]])
    with torch.no_grad():
        logits = model(input_ids=row).logits[0, :-1]
    losses = torch.nn.functional.cross_entropy(logits, row[0, 1:], reduction="none")
    early, late = losses[: CONTEXT // 4].mean().item(), losses[-CONTEXT // 4 :].mean().item()
    assert late <= 1.1 * early, (early, late)
