"""What every st-pooling module shares: reading the features dict, saving, loading, checking dimensions."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

import torch
from safetensors.torch import save_model as save_safetensors_model
from sentence_transformers.base.modules.module import Module
from torch import Tensor, nn

from st_pooling import functional as F
from st_pooling.modules.options import check_required, checked_options

if TYPE_CHECKING:
    from typing_extensions import Self


class _HubKwargs(TypedDict):
    """Where sentence-transformers' Module.load_config / load_torch_weights look for a saved module."""

    subfolder: str
    token: bool | str | None
    cache_folder: str | None
    revision: str | None
    local_files_only: bool

CONFIG_FORMAT_KEY = "st_pooling_config_format"
CONFIG_FORMAT = 1
"""Written into every pooling's config.json. Format 0 (no key) is what st-pooling 0.1 saved; when an option is
renamed, raise the format and say in :data:`RENAMED_OPTIONS` how older configs read, so old models still load."""
RENAMED_OPTIONS: dict[int, dict[str, str]] = {}  # format a config was saved with -> {old option name: new name}


def options_of_format(config: dict[str, Any], source: str) -> dict[str, Any]:
    """A saved config's options in today's names (the format key removed), or an error for a newer format."""
    options = dict(config)
    saved_format = options.pop(CONFIG_FORMAT_KEY, 0)
    if not isinstance(saved_format, int) or saved_format > CONFIG_FORMAT:
        raise ValueError(f"{source} was saved by a newer st-pooling (config format {saved_format!r}; this one reads "
                         f"up to {CONFIG_FORMAT}): pip install -U st-pooling")
    for version in range(saved_format, CONFIG_FORMAT):
        for old, new in RENAMED_OPTIONS.get(version, {}).items():
            if old in options:
                options[new] = options.pop(old)
    return options


def read_token_states(features: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """The last layer's token states and their mask, always in the padded layout.

    Returns ``(states, mask)``: ``(batch, seq, dim)`` and ``(batch, seq)``. Handles the flattened layout that
    sentence-transformers produces under flash-attention unpadding (``cu_seq_lens_q`` present).
    """
    states = features["token_embeddings"]
    if "cu_seq_lens_q" in features:
        return F.unflatten(states, features["cu_seq_lens_q"])
    mask = features.get("attention_mask")
    if mask is None or mask.shape != states.shape[:2]:
        mask = torch.ones(states.shape[:2], dtype=torch.int64, device=states.device)
    return states, mask


def read_layer_states(features: dict[str, Any], module_name: str) -> tuple[list[Tensor], Tensor]:
    """Every hidden layer's token states (embedding output first) and the mask, in the padded layout.

    Returns ``(layers, mask)``: a list of ``num_layers + 1`` tensors ``(batch, seq, dim)`` and ``(batch, seq)``.
    """
    layers = features.get("all_layer_embeddings")
    if layers is None:
        raise ValueError(
            f"{module_name} pools over every hidden layer, but the Transformer did not output hidden states. "
            "Build the model with st_pooling.build_model(...), or create the Transformer with "
            "config_kwargs={'output_hidden_states': True}."
        )
    if "cu_seq_lens_q" in features:
        unflattened = [F.unflatten(layer, features["cu_seq_lens_q"]) for layer in layers]
        return [states for states, _ in unflattened], unflattened[0][1]
    _, mask = read_token_states(features)
    return list(layers), mask


TOKEN_STATES, LAYER_STACK = "token_states", "layer_stack"
"""What a pooling extracts from the base (:attr:`PoolingModule.reads`): the last layer's token states and their mask,
or one summary row per hidden layer."""


@dataclass(frozen=True)
class BaseNeeds:
    """The base-model settings a pooling needs: every layer's hidden states, and whether it reads each text's last
    token (then a decoder must append EOS, so that token is EOS)."""

    hidden_states: bool = False
    last_token: bool = False

    def __or__(self, other: BaseNeeds) -> BaseNeeds:
        return BaseNeeds(self.hidden_states or other.hidden_states, self.last_token or other.last_token)


def prompt_free_mask(mask: Tensor, features: Mapping[str, Any]) -> Tensor:
    """``mask`` without the instruction prompt's tokens: sentence-transformers records the prompt's length in
    ``features["prompt_length"]`` (an int, or a tensor of equal values) when texts are encoded with a prompt."""
    length = features.get("prompt_length")
    if length is None:
        return mask
    length = int(length.reshape(-1)[0]) if isinstance(length, Tensor) else int(length)
    return F.drop_leading_tokens(mask, length) if length > 0 else mask


class PoolingModule(Module):
    """Base of every pooling: reads token states from ``features``, writes ``features["sentence_embedding"]``.

    A pooling is two steps: :meth:`extract` takes what it reads from the base's output (declared by :attr:`reads`:
    the last layer's token states and mask, or a stack of per-layer summaries), and :meth:`head` maps that to the
    embeddings. Token-level poolings implement only :meth:`pool` ((states, mask) -> embeddings). The feature cache of
    the training fast path stores what :meth:`extract` gives and trains :meth:`head` on it; :meth:`base_needs` tells
    model assembly which base settings to turn on. Weights, if any, are saved as ``model.safetensors`` (never pickle)
    next to ``config.json``, which holds :attr:`config_keys`.

    **Prompts.** ``include_prompt=False`` leaves the tokens of an instruction prompt (``encode(..., prompt=...)``,
    ``encode_query``) out of the pooling, as sentence-transformers' ``Pooling`` does, for every pooling; the native
    start and MLTP's layer summaries included. (``weighted_mean`` then weights the text's tokens 1..n from its first
    token, where sentence-transformers' ``weightedmean`` keeps the positions the prompt pushed them to.)

    **Native start** (learnable poolings only, ``native`` is one of their config keys). ``native`` names a
    parameter-free pooling of the last layer (``mean``, ``max``, ``cls``, ``last_token``, ``weighted_mean``): the
    pooling the base model was trained with (:func:`st_pooling.models.native_pooling_of`). The module's output is
    then ``native_pooling(x) + g * learned(x)``, with ``learned`` the head as it would be without a native start
    and ``g`` a learnable per-channel gate (``d`` parameters) that starts at zero (ReZero / LayerScale style). So the
    untrained module gives exactly the native pooling, and training starts from it instead of from a random head:
    the first optimizer step moves ``g`` (its gradient is ``learned(x)`` times the loss gradient, not zero), which
    opens the way for the head's own parameters from the second step on. The native pooling always reads every
    real token with its own default options: a head's ``exclude_first_token`` applies to ``learned`` only.
    ``native=None`` (the default, and what a ``config.json`` without the key loads as) is the head alone.
    """

    name: ClassVar[str] = ""
    """The short name the registry knows this pooling by."""
    reads: ClassVar[str] = TOKEN_STATES
    """What :meth:`extract` gives: ``TOKEN_STATES`` or ``LAYER_STACK`` (which needs every layer's hidden states)."""
    learnable: ClassVar[bool] = False
    """Whether the module has trainable parameters (saved to ``model.safetensors``)."""
    config_keys: list[str] = ["embedding_dimension", "include_prompt"]

    def __init__(self, embedding_dimension: int, native: str | None = None, include_prompt: bool = True) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # sentence-transformers' Module.__init__ is unannotated
        if not isinstance(embedding_dimension, int) or embedding_dimension <= 0:
            raise ValueError(f"embedding_dimension must be a positive int, got {embedding_dimension!r}")
        self.embedding_dimension = embedding_dimension
        self.native = native
        self.include_prompt = bool(include_prompt)
        if native is not None:
            if not self.learnable:
                raise ValueError(f"{type(self).__name__} has no parameters: a native start is for learnable heads")
            self.native_pooling = native_pooling_module(native, embedding_dimension)
            self.native_gate = nn.Parameter(torch.zeros(embedding_dimension))

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        features["sentence_embedding"] = self.pool_features(features)
        return features

    @classmethod
    def base_needs_for(cls, options: Mapping[str, Any]) -> BaseNeeds:
        """The base settings this pooling needs with constructor ``options`` (known before the module is built)."""
        reads_last = "last_token" in (cls.name, options.get("layer_summary"), options.get("native"))
        return BaseNeeds(hidden_states=cls.reads == LAYER_STACK, last_token=reads_last)

    def base_needs(self) -> BaseNeeds:
        return self.base_needs_for({key: getattr(self, key, None) for key in (*self.config_keys, "native")})

    def extraction(self) -> dict[str, Any]:
        """The options that change what :meth:`extract` gives (a feature cache must have been built with the same)."""
        return {}

    def pool_features(self, features: dict[str, Any]) -> Tensor:
        """The sentence embeddings (batch, dim) of a features dict: :meth:`head` of :meth:`extract`."""
        return self.head(self.extract(features))

    def extract(self, features: dict[str, Any]) -> dict[str, Tensor]:
        """What the head reads from the base's output: the last layer's ``token_embeddings`` (batch, seq, dim) and
        their ``attention_mask`` (batch, seq), padded, the prompt left out unless ``include_prompt``."""
        states, mask = read_token_states(features)
        if not self.include_prompt:
            mask = prompt_free_mask(mask, features)
        return {"token_embeddings": states, "attention_mask": mask}

    def head(self, inputs: dict[str, Tensor]) -> Tensor:
        """:meth:`extract`'s output -> (batch, dim): :meth:`pool`, plus the native start when there is one."""
        states, mask = inputs["token_embeddings"], inputs["attention_mask"]
        learned = self.pool(states, self.reduction_mask(mask))
        if self.native is None:
            return learned
        return self.add_to_native(self.native_pooling.pool(states, mask), learned)

    def reduction_mask(self, mask: Tensor) -> Tensor:
        """The mask :meth:`pool` reads: ``mask`` itself, unless a subclass leaves tokens out."""
        return mask

    def add_to_native(self, native: Tensor, learned: Tensor) -> Tensor:
        """The native start: ``native + g * learned`` (batch, dim), computed in float32 for half-precision input and
        returned in ``native``'s dtype; exactly ``native`` while the gate ``g`` is zero."""
        dtype = F.compute_dtype(native.dtype)
        mixed = native.to(dtype) + self.native_gate.to(dtype) * learned.to(dtype)
        return mixed.to(native.dtype)

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        """(batch, seq, dim) token states and (batch, seq) mask -> (batch, dim) sentence embeddings."""
        raise NotImplementedError(f"{type(self).__name__} implements neither pool() nor head()")

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        os.makedirs(output_path, exist_ok=True)
        self.save_config(output_path)
        if self.learnable:
            save_safetensors_model(self, os.path.join(output_path, "model.safetensors"))

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), CONFIG_FORMAT_KEY: CONFIG_FORMAT}

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             init_defaults: dict[str, Any] | None = None, **kwargs: Any) -> Self:
        hub_kwargs: _HubKwargs = dict(subfolder=subfolder, token=token, cache_folder=cache_folder, revision=revision,
                                      local_files_only=local_files_only)
        folder = os.path.join(model_name_or_path, subfolder)
        config_path = os.path.join(folder, cls.config_file_name)
        if os.path.isdir(folder) and not os.path.isfile(config_path):
            raise FileNotFoundError(f"{config_path} is missing: the saved {cls.__name__} cannot be rebuilt without "
                                    "it; save the model again (model.save(path)) or restore the file")
        try:
            config = cls.load_config(model_name_or_path, **hub_kwargs)
        except ValueError as error:  # json's decode errors are ValueErrors
            raise ValueError(f"{config_path} is not valid JSON ({error}): save the model again") from None
        options = checked_options(cls, options_of_format(config, config_path), config_path)
        check_required(cls, options, config_path)
        module = cls(**options)
        if module.learnable:
            weights = os.path.join(folder, "model.safetensors")
            try:
                cls.load_torch_weights(model_name_or_path, model=module, **hub_kwargs)
            except RuntimeError as error:
                raise ValueError(f"The weights saved for {cls.__name__} in {folder} do not fit its config.json "
                                 f"{config}: {error}") from None
            except Exception as error:  # safetensors' own errors on a damaged file (e.g. SafetensorError)
                if not type(error).__name__.startswith("Safetensor"):
                    raise
                raise ValueError(f"{weights} is damaged ({error}): save or copy the model again") from None
            broken = [name for name, tensor in module.state_dict().items() if not torch.isfinite(tensor).all()]
            if broken:
                raise ValueError(f"{weights} holds NaN or infinite values in {', '.join(broken)}: this {cls.__name__} "
                                 "would embed every text as NaN; retrain it or restore the file")
        return module

    def on_model_ready(self, model: Iterable[nn.Module]) -> None:
        """Refuse, with a clear message, a pooling whose dimension differs from the module that feeds it."""
        modules = list(model)
        position = next((i for i, module in enumerate(modules) if module is self), None)
        if not position:  # first, or nested inside another module (e.g. a Router): nothing upstream to compare
            return
        upstream = modules[position - 1]
        get_dim = getattr(upstream, "get_embedding_dimension", None)
        upstream_dim = get_dim() if get_dim is not None else None
        if upstream_dim is not None and upstream_dim != self.embedding_dimension:
            raise ValueError(
                f"{type(self).__name__} was built for {self.embedding_dimension}-dimensional token states, but "
                f"{type(upstream).__name__} produces {upstream_dim}-dimensional ones. A pooling head saved for one "
                "base model cannot sit on another: rebuild it with st_pooling.build_model(base, pooling)."
            )

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={getattr(self, key)!r}" for key in self.config_keys)

    def __repr__(self) -> str:
        return torch.nn.Module.__repr__(self)


class ReductionPooling(PoolingModule):
    """A pooling that reduces tokens with a mask, optionally leaving out each text's first token.

    ``exclude_first_token`` drops the first real token from the reduction: decoders use it as an attention sink
    with huge activations that otherwise dominate every mean.
    """

    config_keys: list[str] = ["embedding_dimension", "exclude_first_token", "include_prompt"]

    def __init__(self, embedding_dimension: int, exclude_first_token: bool = False, native: str | None = None,
                 include_prompt: bool = True) -> None:
        super().__init__(embedding_dimension, native, include_prompt)
        self.exclude_first_token = bool(exclude_first_token)

    def reduction_mask(self, mask: Tensor) -> Tensor:
        return F.drop_first_token(mask) if self.exclude_first_token else mask


def check_native(name: str) -> type[PoolingModule]:
    """The class of pooling ``name`` if a native start can start from it (a parameter-free pooling of the last
    layer); else ``ValueError`` listing the ones it can."""
    from st_pooling.modules.registry import POOLINGS, pooling_class  # the registry imports this module

    cls = pooling_class(name)
    if cls.learnable or cls.reads != TOKEN_STATES:
        choices = sorted(key for key, known in POOLINGS.items() if not known.learnable and known.reads == TOKEN_STATES)
        raise ValueError(f"native must be a parameter-free pooling of the last layer ({', '.join(choices)}), "
                         f"got {name!r}")
    return cls


def native_pooling_module(name: str, embedding_dimension: int) -> PoolingModule:
    """The parameter-free last-layer pooling ``name`` with its default options: what a native start starts from."""
    return check_native(name)(embedding_dimension)
