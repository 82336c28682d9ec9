"""Bundled reference micro-models, addressable as ``zoo:NAME`` wherever a model id is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effbench.errors import EffbenchError

PREFIX = "zoo:"
MODELS_DIR = Path(__file__).parent / "models"
WEIGHTS = "model.safetensors"
SIZES = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "intermediate_size")


def available() -> list[str]:
    """Names of the bundled models (directories holding a config)."""
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())


def resolve(model_id: str) -> str:
    """Turn ``zoo:NAME`` into its local directory; Hub ids and paths pass through unchanged."""
    if not model_id.startswith(PREFIX):
        return model_id
    name = model_id[len(PREFIX) :]
    if name not in available():
        raise EffbenchError(f"unknown zoo model {model_id!r}; available: {', '.join(PREFIX + n for n in available())}")
    return str(MODELS_DIR / name)


def config(model_id: str, *, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The model's transformers config (cheap: no weights), with a clear error when it cannot be read."""
    from transformers import AutoConfig

    if not model_id.strip():
        raise EffbenchError("model '': give a zoo:NAME, a Hub id or a local directory")
    location = resolve(model_id)
    local = Path(location)
    if local.is_dir() and not any(local.glob("*.safetensors")):
        raise EffbenchError(f"model {model_id!r}: no safetensors weights in {local} (expected {WEIGHTS})")
    try:
        loaded = AutoConfig.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as err:  # a malformed config.json fails in many ways inside transformers
        reason = " ".join(str(err).split())[:300] or type(err).__name__  # one line, however transformers words it
        raise EffbenchError(f"model {model_id!r}: no usable config at {location}: {reason}") from None
    for key in SIZES:
        value = getattr(loaded, key, None)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise EffbenchError(f"model {model_id!r}: config.json {key} must be a positive integer, got {value!r}")
    return loaded


def load(
    model_id: str, *, revision: str | None = None, trust_remote_code: bool = False, device: str = "cpu", **kwargs: Any
):
    """Load (model, tokenizer) with safetensors only onto ``device``, turning broken files into a clear error.

    ``kwargs`` go to ``from_pretrained`` (``dtype``, ``attn_implementation``, ``device_map``, which then places the
    model instead of ``device``).
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = resolve(model_id)
    local = Path(location)
    if local.is_dir() and not any(local.glob("*.safetensors")):
        raise EffbenchError(f"model {model_id!r}: no safetensors weights in {local} (expected {WEIGHTS})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location, revision=revision, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
        )
    except (SafetensorError, OSError, ValueError) as err:
        raise EffbenchError(f"model {model_id!r} could not be loaded from {location}: {err}") from err
    if not kwargs.get("device_map"):
        model.to(device)
    model.eval()
    return model, tokenizer
