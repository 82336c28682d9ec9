"""The training script reproduces the committed loss curve of its first steps, and both phases are deterministic."""

import json

import pytest

from effbench.reference.zoo import MODELS_DIR
from effbench.reference.zoo.train import train


@pytest.mark.parametrize("model", ["micro-s"])
def test_training_reproduces_the_recorded_loss_curve(tmp_path, model):
    pretrain = json.loads((MODELS_DIR / model / "training_log.json").read_text())["phases"][0]
    first = train(model, tmp_path / "a", steps=3, log_every=0)
    second = train(model, tmp_path / "b", steps=3, log_every=0)
    assert first == second and len(first) == 6  # three steps of each phase
    assert first[:3] == pytest.approx(pretrain["loss_curve"][:3], abs=2e-4)
    assert (tmp_path / "a" / "model.safetensors").is_file()


def test_extension_starts_from_a_pretrained_checkpoint_of_its_own_recipe(tmp_path):
    """A model that was not trained by the recipe's first phase is refused before any training."""
    with pytest.raises(ValueError, match="was not trained by this recipe's pretrain phase"):
        train("micro-s", tmp_path / "out", steps=1, log_every=0, pretrained=MODELS_DIR / "micro-m")
    assert not (tmp_path / "out").exists()
