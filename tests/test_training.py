"""The training script reproduces the committed loss curve of its first steps."""

import json

import pytest

from effbench.reference.zoo import MODELS_DIR
from effbench.reference.zoo.train import train


@pytest.mark.parametrize("model", ["micro-s"])
def test_training_reproduces_the_recorded_loss_curve(tmp_path, model):
    recorded = json.loads((MODELS_DIR / model / "training_log.json").read_text())["loss_curve"]
    first = train(model, tmp_path / "a", steps=3, log_every=0)
    second = train(model, tmp_path / "b", steps=3, log_every=0)
    assert first == second
    assert first == pytest.approx(recorded[:3], abs=2e-4)
    assert (tmp_path / "a" / "model.safetensors").is_file()
