"""The bundled reference models: name resolution, clear load errors, portable artifacts, real accuracy."""

import json
import shutil

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from effbench.errors import EffbenchError
from effbench.reference import zoo
from effbench.reference.zoo.train import RECIPES


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
