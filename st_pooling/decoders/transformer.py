"""A sentence-transformers Transformer module for decoder base models.

``DecoderTransformer`` is ST's ``Transformer`` with three saved settings more (in
``sentence_bert_config.json``, applied when built and again when loaded, so a plain
``SentenceTransformer(saved_path)`` in a new process restores them):

- ``attention_mode``: ``"causal"`` (default) or ``"bidirectional"`` (see ``attention.py``);
- ``append_eos``: end every text with the EOS token, for last-token pooling (see ``tokenizer.py``);
- ``padding_side``: ``"left"``/``"right"``, or None to keep the tokenizer's side.

It also reads plain text only (the ``text`` modality, never a chat template) and gives the model
position ids counted from the attention mask, so that left padding does not shift the positions of
the real tokens (it would for absolute position embeddings such as GPT-2's).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.sentence_transformer.modules import Transformer

from st_pooling.decoders.attention import check_attention_mode, get_attention_mode, set_attention_mode
from st_pooling.decoders.tokenizer import PaddingSide, configure_decoder_tokenizer

# Plain-text input producing token states: ST's feature-extraction default, pinned so that a
# tokenizer's chat template never turns on the "message" modality.
TEXT_ONLY_MODALITY_CONFIG: dict[str, dict[str, str]] = {
    "text": {"method": "forward", "method_output_name": "last_hidden_state"}
}


class DecoderTransformer(Transformer):
    """ST ``Transformer`` for decoder models, with saved attention mode, EOS appending and padding side.

    Args:
        model_name_or_path: a Hub id or a local folder with a transformers decoder and its tokenizer.
        attention_mode: ``"causal"`` or ``"bidirectional"``.
        append_eos: append the EOS token to every text (kept under truncation).
        padding_side: ``"left"`` or ``"right"``; None keeps the tokenizer's own.
        **kwargs: everything ST's ``Transformer`` accepts (``model_kwargs``, ``processor_kwargs``,
            ``config_kwargs``, ``max_seq_length``, ...).

    Example::

        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Pooling
        from st_pooling.decoders import DecoderTransformer, smollm2_path

        base = DecoderTransformer(smollm2_path(), attention_mode="bidirectional", max_seq_length=256)
        model = SentenceTransformer(modules=[base, Pooling(base.get_embedding_dimension(), "mean")])
    """

    config_keys: list[str] = [*Transformer.config_keys, "attention_mode", "append_eos", "padding_side"]

    def __init__(
        self,
        model_name_or_path: str,
        *,
        attention_mode: str = "causal",
        append_eos: bool = False,
        padding_side: PaddingSide | None = None,
        **kwargs: Any,
    ) -> None:
        check_attention_mode(attention_mode)
        if not isinstance(append_eos, bool):
            raise ValueError(f"append_eos must be True or False, got {append_eos!r}.")
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}.")
        if kwargs.get("modality_config") is None:
            kwargs["modality_config"] = TEXT_ONLY_MODALITY_CONFIG
            kwargs["module_output_name"] = "token_embeddings"
        super().__init__(model_name_or_path, **kwargs)
        if self.tokenizer is None:
            raise ValueError(f"{model_name_or_path!r} has no tokenizer; DecoderTransformer needs a text model.")
        set_attention_mode(self.model, attention_mode)
        configure_decoder_tokenizer(self.tokenizer, padding_side=padding_side, append_eos=append_eos)
        self.append_eos = append_eos
        self.padding_side = padding_side
        self._model_accepts_position_ids = "position_ids" in inspect.signature(self.model.forward).parameters

    @property
    def attention_mode(self) -> str:
        """The attention mode the wrapped model runs with (read from the model itself)."""
        return get_attention_mode(self.model)

    @attention_mode.setter
    def attention_mode(self, mode: str) -> None:
        set_attention_mode(self.model, mode)

    def preprocess(self, inputs: Sequence[Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """ST's preprocess, with an empty text read as the EOS token.

        A decoder tokenizer that adds no special token turns "" into zero tokens; every pooling would then see an
        empty row (a zero vector, or NaN from some of sentence-transformers' own modes). Empty texts occur in real
        data (two Cranfield documents), so they get the one token that means "end of text".
        """
        eos = self.tokenizer.eos_token
        if eos is not None and not self.append_eos:
            inputs = [eos if isinstance(text, str) and not text else text for text in inputs]
        return super().preprocess(inputs, *args, **kwargs)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """ST's forward, plus position ids counted from the attention mask (left padding safe)."""
        attention_mask = features.get("attention_mask")
        if (
            self._model_accepts_position_ids
            and "position_ids" not in features
            and "position_ids" not in kwargs
            and isinstance(attention_mask, torch.Tensor)
            and attention_mask.ndim == 2
        ):
            kwargs["position_ids"] = position_ids_from_mask(attention_mask)
        return super().forward(features, **kwargs)

    def __repr__(self) -> str:
        return f"DecoderTransformer({dict(self.get_config_dict(), architecture=self.model.__class__.__name__)})"


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each token among the real tokens of its row; padding gets position 0.

    attention_mask: (batch, seq_len) of 0/1  ->  (batch, seq_len) long.
    """
    positions = attention_mask.long().cumsum(dim=-1) - 1  # (batch, seq_len)
    return positions.clamp(min=0) * attention_mask.long()
