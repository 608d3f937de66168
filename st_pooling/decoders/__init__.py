"""Decoder (GPT-family) base models: the packaged SmolLM2, attention mode, tokenizer hygiene, ST module."""

from st_pooling.decoders.architectures import BIDIRECTIONAL_MODEL_TYPES, DECODER_MODEL_TYPES, is_decoder
from st_pooling.decoders.attention import ATTENTION_MODES, get_attention_mode, set_attention_mode
from st_pooling.decoders.smollm2 import smollm2_path
from st_pooling.decoders.tokenizer import (
    appends_eos,
    configure_decoder_tokenizer,
    enable_eos_appending,
    ensure_pad_token,
)
from st_pooling.decoders.transformer import DecoderTransformer, position_ids_from_mask

__all__ = [
    "ATTENTION_MODES", "BIDIRECTIONAL_MODEL_TYPES", "DECODER_MODEL_TYPES", "DecoderTransformer",
    "appends_eos", "configure_decoder_tokenizer", "enable_eos_appending", "ensure_pad_token",
    "get_attention_mode", "is_decoder", "position_ids_from_mask", "set_attention_mode", "smollm2_path",
]
