"""Causal or bidirectional attention for one decoder model instance (transformers 5.x).

transformers 5 has the switch built in, spread over two places:

- ``create_causal_mask`` / ``create_sliding_window_causal_mask`` (``masking_utils``) return a
  bidirectional padding mask when ``config.is_causal`` is False;
- the ``merge_with_config_defaults`` decorator on the base model's ``forward`` passes
  ``is_causal=config.is_causal`` down to every attention call, where SDPA and flash attention use
  it instead of the attention module's own ``is_causal`` flag (SDPA would otherwise fall back to its
  causal kernel whenever the mask is skipped, i.e. for a batch without padding).

So one model is switched by setting ``is_causal`` on *its* config, plus the ``is_causal`` flag of
each self-attention module for code paths that read the module. The model first gets a private
copy of its config: models built from one shared config object would otherwise switch together.
Nothing global (no class or function) is patched. Eager and SDPA attention both honour the switch
(tests/test_decoders.py checks both for every supported family).
"""

from __future__ import annotations

import copy
from typing import Literal

from torch import nn
from transformers import PreTrainedModel

from st_pooling.decoders.architectures import BIDIRECTIONAL_MODEL_TYPES

AttentionMode = Literal["causal", "bidirectional"]
ATTENTION_MODES: tuple[str, ...] = ("causal", "bidirectional")


def check_attention_mode(mode: str) -> AttentionMode:
    """Return ``mode`` if it names an attention mode, else raise a ValueError listing the choices."""
    if mode not in ATTENTION_MODES:
        raise ValueError(f"Unknown attention mode {mode!r}: choose one of {', '.join(ATTENTION_MODES)}.")
    return mode  # type: ignore[return-value]


def set_attention_mode(hf_model: PreTrainedModel, mode: str) -> PreTrainedModel:
    """Switch one transformers decoder to ``"causal"`` or ``"bidirectional"`` attention, in place.

    Only ``hf_model`` changes: it gets its own copy of its config (so other models that shared the
    config object keep their mode), with ``is_causal`` set, and its self-attention modules get the
    same ``is_causal`` flag. The setting is saved by ``save_pretrained`` (``"is_causal"`` in
    config.json) and honoured by transformers >= 5.2 when that folder is loaded again.

    Args:
        hf_model: a transformers model of a supported family (llama, qwen2, mistral, gpt2),
            base model or ``...ForCausalLM``.
        mode: ``"causal"`` (what the model was trained with) or ``"bidirectional"``.

    Returns:
        ``hf_model`` itself, for chaining.

    Raises:
        ValueError: for an unknown mode or an architecture outside the supported families.
    """
    check_attention_mode(mode)
    config = getattr(hf_model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in BIDIRECTIONAL_MODEL_TYPES:
        raise ValueError(
            f"Attention mode switching supports the model types {sorted(BIDIRECTIONAL_MODEL_TYPES)}, "
            f"not {model_type!r} ({type(hf_model).__name__}). Use a model of a supported family, or keep "
            "this model causal (do not pass an attention mode)."
        )
    attention_modules = _self_attention_modules(hf_model)
    if not attention_modules:
        raise ValueError(
            f"Found no attention module with an `is_causal` flag in {type(hf_model).__name__}: "
            "this transformers version lays the model out differently than st_pooling expects."
        )
    private_config = _give_private_config(hf_model)
    causal = mode == "causal"
    private_config.is_causal = causal
    for module in attention_modules:
        module.is_causal = causal
    return hf_model


def get_attention_mode(hf_model: PreTrainedModel) -> AttentionMode:
    """The attention mode ``hf_model`` runs with: ``"bidirectional"`` if its config says ``is_causal=False``."""
    return "causal" if getattr(hf_model.config, "is_causal", True) else "bidirectional"


def _self_attention_modules(hf_model: nn.Module) -> list[nn.Module]:
    """Modules that carry an ``is_causal`` flag, cross-attention (always non-causal) left out."""
    return [
        module
        for module in hf_model.modules()
        if hasattr(module, "is_causal") and not getattr(module, "is_cross_attention", False)
    ]


def _give_private_config(hf_model: nn.Module):
    """Replace the config object shared by ``hf_model`` and its submodules by one private copy."""
    shared = hf_model.config
    private = copy.deepcopy(shared)
    for module in hf_model.modules():
        if getattr(module, "config", None) is shared:
            module.config = private
    return private
