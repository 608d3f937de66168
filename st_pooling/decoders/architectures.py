"""Which Hugging Face architectures are decoders, and which of them can switch attention mode."""

from __future__ import annotations

from transformers import PretrainedConfig

# Decoder-only families (model_type values of transformers' configs). Used to recognise a decoder
# from its config alone, without loading weights.
DECODER_MODEL_TYPES: frozenset[str] = frozenset(
    {
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gpt2", "gpt_neo", "gpt_neox",
        "gptj", "gpt_bigcode", "phi", "phi3", "gemma", "gemma2", "gemma3_text", "falcon", "opt", "bloom",
        "olmo", "olmo2", "starcoder2", "granite", "smollm3", "stablelm", "cohere", "codegen",
    }
)

# Families whose bidirectional mode is implemented and tested here (tests/test_decoders.py): their
# modeling files build masks with `create_causal_mask` (which honours `config.is_causal = False`)
# and forward `is_causal` to the attention function.
BIDIRECTIONAL_MODEL_TYPES: frozenset[str] = frozenset({"llama", "qwen2", "mistral", "gpt2"})


def is_decoder(config: PretrainedConfig) -> bool:
    """Whether ``config`` describes a decoder-only (causal language model) transformer.

    True for the known decoder families (llama, qwen2, mistral, gpt2, ...) and for any config whose
    ``architectures`` name a ``...ForCausalLM`` class without being an encoder-decoder. Encoders such
    as BERT (whose configs name ``BertModel`` or ``BertForMaskedLM``) give False.
    """
    if not isinstance(config, PretrainedConfig):
        raise TypeError(
            f"is_decoder expects a transformers PretrainedConfig, got {type(config).__name__}; "
            "load one with transformers.AutoConfig.from_pretrained(path)."
        )
    if getattr(config, "is_encoder_decoder", False):
        return False
    if config.model_type in DECODER_MODEL_TYPES:
        return True
    architectures = getattr(config, "architectures", None) or []
    return any(name.endswith("ForCausalLM") for name in architectures)
