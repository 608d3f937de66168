"""Tokenizer hygiene for decoder embedders: a pad token, a padding side, an appended EOS, no chat template.

Why each matters:
- decoder tokenizers often ship without a pad token; batching needs one (the EOS is the usual pick,
  real and padded positions stay apart through the attention mask);
- last-token pooling reads the final real position; models trained that way (E5-Mistral, the EOS
  design of Tang and Yang 2024) read the state of an appended EOS, which sentence-transformers 6.2
  does not add;
- sentence-transformers 6.2 renders text through a tokenizer's chat template when one exists, which
  wraps every sentence in chat markup: embeddings want the plain text.

EOS appending is done by the fast tokenizer's own post-processor (the step that adds special tokens):
the existing post-processor is kept and an EOS template runs after it. So it survives truncation
(the tokenizer reserves room for it: a truncated text still ends with EOS), works with either padding
side, and is saved in ``tokenizer.json``, so a saved model appends EOS again when loaded anywhere.
"""

from __future__ import annotations

from typing import Literal

from tokenizers import processors
from transformers import PreTrainedTokenizerBase

PaddingSide = Literal["left", "right"]


def configure_decoder_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    padding_side: PaddingSide | None = None,
    append_eos: bool = False,
    drop_chat_template: bool = True,
) -> PreTrainedTokenizerBase:
    """Make a decoder's tokenizer fit for embedding, in place.

    Args:
        tokenizer: a (fast) transformers tokenizer.
        padding_side: ``"left"`` or ``"right"``; None keeps the tokenizer's own side.
        append_eos: make every tokenized text end with the EOS token (see :func:`enable_eos_appending`).
        drop_chat_template: remove the chat template so sentence-transformers encodes plain text.

    Returns:
        the same tokenizer.

    Raises:
        ValueError: for a padding side other than left/right, or when a pad token is needed but the
            tokenizer has neither a pad nor an EOS token.
    """
    if padding_side is not None:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
        tokenizer.padding_side = padding_side
    ensure_pad_token(tokenizer)
    if append_eos:
        enable_eos_appending(tokenizer)
    if drop_chat_template and getattr(tokenizer, "chat_template", None) is not None:
        tokenizer.chat_template = None
    return tokenizer


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Use the EOS token as pad token when the tokenizer has none."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise ValueError(
            f"{type(tokenizer).__name__} has neither a pad token nor an EOS token: set one first, e.g. "
            "tokenizer.add_special_tokens({'pad_token': '<pad>'}) and resize the model's embeddings."
        )
    tokenizer.pad_token = tokenizer.eos_token


def appends_eos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether tokenizing a text (with special tokens) ends it with the EOS token id."""
    if tokenizer.eos_token_id is None:
        return False
    input_ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(input_ids) and input_ids[-1] == tokenizer.eos_token_id


def enable_eos_appending(tokenizer: PreTrainedTokenizerBase) -> None:
    """Make the tokenizer append its EOS token to every text (and to each text of a pair).

    Does nothing when it already does. Keeps the tokenizer's existing post-processing (a BOS token,
    byte-level offset trimming) and runs an EOS template after it.

    Raises:
        ValueError: for a tokenizer without an EOS token or without a fast (``tokenizers``) backend.
    """
    if tokenizer.eos_token is None or tokenizer.eos_token_id is None:
        raise ValueError(
            f"{type(tokenizer).__name__} has no EOS token, so none can be appended: "
            "set tokenizer.eos_token first or turn append_eos off."
        )
    if appends_eos(tokenizer):
        return
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer, so EOS appending cannot be installed; "
            "load the tokenizer with use_fast=True."
        )
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    eos_template = processors.TemplateProcessing(
        single=f"$A:0 {eos}:0",
        pair=f"$A:0 {eos}:0 $B:1 {eos}:1",
        special_tokens=[(eos, eos_id)],
    )
    existing = backend.post_processor
    backend.post_processor = eos_template if existing is None else processors.Sequence([existing, eos_template])
