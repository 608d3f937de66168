"""The search space: which pooling heads to try, with which options and learning rates, trained how long.

A space is read from a small YAML or JSON file or built from command-line options. Every entry of ``candidates`` is
a grid: each option given as a list is a set of choices, and the entry expands to every combination. ``lr`` (the
learning rate) is a choice like any other; ``seed`` likewise. A list-valued pooling option (MLTP ``layers``) is
given as a list of choices, each itself a list: ``layers: [[1, 2, 3, 4, 5, 6], [4, 5, 6]]``.

.. code-block:: yaml

    base: minilm
    max_seq_length: 64
    train: stsb            # any st-pooling training source (stsb, sick, a .jsonl/.csv/.tsv file, ...)
    dev: stsb:dev          # scored pairs: the dev score is cosine Spearman
    max_train: 1000        # seeded subsets sized for a CPU (optional)
    max_dev: 500
    loss: cosent
    batch_size: 32
    steps: 120             # optimizer steps of a full run
    eval_every: 10         # one learning-curve point (dev score) every this many steps
    native_start: true     # heads start as exactly the base's own pooling (default; a candidate may set native)
    lora_rank: null        # e.g. 16: train LoRA adapters of the base beside each head (live forward passes: a GPU)
    lora_learning_rate: 0.0001   # the adapters' learning rate (a candidate's lr is its head's)
    candidates:
      - {pooling: weighted_sum, lr: [0.001, 0.01]}
      - {pooling: latent_attention, num_latents: [4, 16], lr: [0.0003, 0.001]}
      - {pooling: mltp, layer_summary: mean, layers: [[1, 2, 3, 4, 5, 6], [4, 5, 6]], lr: 0.001}
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from st_pooling.modules.base import check_native
from st_pooling.modules.registry import pooling_class
from st_pooling.modules.spec import PoolingSpec

TRAINING_KEYS = ("lr", "seed")
SPACE_KEYS = ("base", "max_seq_length", "train", "dev", "max_train", "max_dev", "loss", "batch_size", "steps",
              "eval_every", "seed", "candidates", "data_dir", "native_start", "lora_rank", "lora_learning_rate")
OPTIONAL_KEYS = {"native_start": False, "lora_rank": None, "lora_learning_rate": 1e-4}
"""Settings added after the first searches were saved, with the value that reproduces those searches: a setting at
that value is left out of the fingerprint, so a search saved before it existed still resumes."""


class SearchSpaceError(ValueError):
    """A search space (file or options) that cannot be searched; the message says what to change."""


@dataclass(frozen=True)
class Candidate:
    """One configuration to train: a pooling (the package's one :class:`~st_pooling.modules.spec.PoolingSpec`),
    a learning rate and a seed."""

    index: int
    spec: PoolingSpec
    learning_rate: float
    seed: int = 0

    @property
    def pooling(self) -> str:
        return self.spec.pooling

    @property
    def options(self) -> Mapping[str, Any]:
        return self.spec.options

    @property
    def id(self) -> str:
        return f"c{self.index:02d}-{self.pooling}"

    @property
    def label(self) -> str:
        options = ",".join(f"{key}={_short(value)}" for key, value in sorted(self.options.items()))
        return f"{self.pooling}({options}{',' if options else ''}lr={self.learning_rate:g})"

    @property
    def head_key(self) -> str:
        """What decides the untrained head: the pooling, its options and the seed (the learning rate does not)."""
        return json.dumps([self.pooling, dict(self.options), self.seed], sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "pooling": self.pooling, "options": dict(self.options), "lr": self.learning_rate,
                "seed": self.seed}


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(str(item) for item in value)
    return str(value)


@dataclass(frozen=True)
class SearchSpace:
    """Everything a search needs to know except how to search: data, budget and the candidates."""

    candidates: tuple[Candidate, ...]
    base: str = "minilm"
    max_seq_length: int = 64
    train: str = "stsb"
    dev: str = "stsb:dev"
    max_train: int | None = None
    max_dev: int | None = None
    loss: str = "cosent"
    batch_size: int = 32
    steps: int = 120
    eval_every: int = 10
    seed: int = 0
    data_dir: str | None = field(default=None, compare=False)
    native_start: bool | str = True
    """Start every learnable head as exactly the base's own pooling (true, :func:`st_pooling.models.with_native_start`),
    as the parameter-free pooling it names (e.g. ``weighted_mean``), or from its own initial values (false); a
    candidate option ``native`` (a pooling name, or null) overrides it for that candidate."""

    lora_rank: int | None = None
    """Train LoRA adapters of this rank on every linear layer of the base beside each head (``None``: the base stays
    frozen and its features are cached). Every step then runs the base forward and backward: meant for a GPU."""
    lora_learning_rate: float = 1e-4
    """The adapters' learning rate (``train --mode lora``'s default); a candidate's ``lr`` is its head's."""

    def __post_init__(self) -> None:
        if self.lora_rank is not None:
            _check_positive_int("lora_rank", self.lora_rank)
        # the candidates' lr check, which also reads YAML's `1e-4` (a string to YAML 1.1) as a number
        object.__setattr__(self, "lora_learning_rate", _learning_rate(self.lora_learning_rate, "lora_learning_rate"))
        if not isinstance(self.native_start, (bool, str)):
            raise SearchSpaceError(f"native_start must be true, false or a pooling name, got {self.native_start!r}")
        if isinstance(self.native_start, str):
            try:
                check_native(self.native_start)
            except ValueError as error:
                raise SearchSpaceError(f"native_start: {error}") from None
        _check_positive_int("steps", self.steps)
        _check_positive_int("eval_every", self.eval_every)
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("max_seq_length", self.max_seq_length)
        for name in ("max_train", "max_dev"):
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name))
        if self.steps % self.eval_every:
            raise SearchSpaceError(f"steps ({self.steps}) must be a multiple of eval_every ({self.eval_every}) so "
                                   "every learning curve ends on an evaluation point")
        if self.steps // self.eval_every < 3:
            raise SearchSpaceError(f"steps / eval_every = {self.steps // self.eval_every} evaluation intervals; a search "
                                   "needs at least 3 (4 curve points) to read a learning curve: lower eval_every")
        if not self.candidates:
            raise SearchSpaceError("the search space has no candidates")
        ids = [candidate.id for candidate in self.candidates]
        if len(set(ids)) != len(ids):
            raise SearchSpaceError("candidate ids are not unique")

    @property
    def eval_steps(self) -> list[int]:
        """The steps at which the dev score is recorded: 0 (untrained), eval_every, ..., steps."""
        return list(range(0, self.steps + 1, self.eval_every))

    @property
    def full_compute_steps(self) -> int:
        """Optimizer steps of training every candidate to the end."""
        return self.steps * len(self.candidates)

    def fingerprint(self) -> str:
        """A short hash of what decides the learning curves (not where the data lie)."""
        payload = {key: value for key, value in asdict(self).items() if key not in ("data_dir", "candidates")
                   and not (key in OPTIONAL_KEYS and OPTIONAL_KEYS[key] == value)}
        payload["candidates"] = [candidate.to_dict() for candidate in self.candidates]
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        payload = {key: value for key, value in asdict(self).items() if key != "candidates"}
        payload["candidates"] = [candidate.to_dict() for candidate in self.candidates]
        return payload

    def with_overrides(self, **changes: Any) -> SearchSpace:
        """A copy with the given scalar settings changed (None values are ignored)."""
        changes = {key: value for key, value in changes.items() if value is not None}
        unknown = set(changes) - set(SPACE_KEYS) - {"candidates"}
        if unknown:
            raise SearchSpaceError(f"unknown search-space settings: {', '.join(sorted(unknown))}")
        try:
            return replace(self, **changes)
        except TypeError as error:
            raise SearchSpaceError(str(error)) from None


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SearchSpaceError(f"{name} must be a positive integer, got {value!r}")


def _choices(key: str, value: Any) -> list[Any]:
    """A grid entry's choices: a list is a set of choices, anything else one fixed value."""
    if isinstance(value, list | tuple):
        if not value:
            raise SearchSpaceError(f"option {key!r} has an empty list of choices")
        return list(value)
    return [value]


def _learning_rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SearchSpaceError(f"{where}: lr must be a number, got {value!r}")
    try:
        rate = float(value)
    except ValueError:
        raise SearchSpaceError(f"{where}: lr must be a number, got {value!r}") from None
    if not math.isfinite(rate) or not 0 < rate < 1:
        raise SearchSpaceError(f"{where}: lr must lie in (0, 1), got {value!r}")
    return rate


def expand_entry(entry: Mapping[str, Any], first_index: int, default_seed: int, where: str) -> list[Candidate]:
    """The candidates of one grid entry ``{pooling: ..., option: value or [choices], lr: ..., seed: ...}``."""
    if not isinstance(entry, Mapping):
        raise SearchSpaceError(f"{where} must be a mapping such as {{pooling: gem, lr: [0.001, 0.01]}}, "
                               f"got {entry!r}")
    if "pooling" not in entry:
        raise SearchSpaceError(f"{where} names no pooling")
    entry = dict(entry)
    pooling = entry.pop("pooling")
    if not isinstance(pooling, str):
        raise SearchSpaceError(f"{where}: pooling must be a name, got {pooling!r}")
    try:
        cls = pooling_class(pooling)
    except ValueError as error:
        raise SearchSpaceError(f"{where}: {error}") from None
    if not cls.learnable:
        raise SearchSpaceError(f"{where}: pooling {pooling!r} has no learnable parameters, so it has no learning "
                               "curve to search over; evaluate it with `st-pooling compare` instead")
    if "lr" not in entry:
        raise SearchSpaceError(f"{where} ({pooling}) gives no lr (learning rate, e.g. lr: [0.001, 0.01])")
    keys = list(entry)
    grids = [_choices(key, entry[key]) for key in keys]
    candidates = []
    for values in itertools.product(*grids):
        chosen = dict(zip(keys, values))
        rate = _learning_rate(chosen.pop("lr"), where)
        seed = chosen.pop("seed", default_seed)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SearchSpaceError(f"{where}: seed must be an integer, got {seed!r}")
        candidates.append(Candidate(first_index + len(candidates), PoolingSpec(pooling, chosen), rate, seed))
    return candidates


def space_from_dict(raw: Mapping[str, Any], source: str = "search space") -> SearchSpace:
    """A :class:`SearchSpace` from the parsed contents of a search-space file."""
    if not isinstance(raw, Mapping):
        raise SearchSpaceError(f"{source} must hold a mapping with a 'candidates' list, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SPACE_KEYS))
    if unknown:
        raise SearchSpaceError(f"{source}: unknown keys {', '.join(unknown)}; known keys: {', '.join(SPACE_KEYS)}")
    entries = raw.get("candidates")
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise SearchSpaceError(f"{source} needs a non-empty 'candidates' list of "
                               "{pooling: NAME, lr: [..], option: [..]} entries")
    settings = {key: value for key, value in raw.items() if key != "candidates"}
    seed = settings.get("seed", 0)
    candidates: list[Candidate] = []
    for number, entry in enumerate(entries, start=1):
        candidates += expand_entry(entry, len(candidates), seed, f"{source}: candidates entry {number}")
    try:
        return SearchSpace(candidates=tuple(candidates), **settings)
    except TypeError as error:
        raise SearchSpaceError(f"{source}: {error}") from None


def load_space(path: str | Path) -> SearchSpace:
    """Read a search space from a ``.yaml``/``.yml`` or ``.json`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SearchSpaceError(f"search-space file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise SearchSpaceError(f"{path} is not valid JSON: {error}") from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise SearchSpaceError(f"{path} is not valid YAML: {error}") from None
    else:
        raise SearchSpaceError(f"{path}: a search space is a .yaml, .yml or .json file")
    return space_from_dict(raw, source=str(path))


def space_from_options(poolings: Sequence[str], learning_rates: Sequence[float], **settings: Any) -> SearchSpace:
    """A grid of pooling specs (``gem``, ``latent_attention:num_latents=4``) times learning rates."""
    if not poolings:
        raise SearchSpaceError("give at least one pooling (--poolings) or a search-space file (--space)")
    if not learning_rates:
        raise SearchSpaceError("give at least one learning rate (--lrs)")
    entries = []
    for text in poolings:
        try:
            spec = PoolingSpec.parse(text)
        except ValueError as error:
            raise SearchSpaceError(str(error)) from None
        entries.append({"pooling": spec.pooling, **dict(spec.options), "lr": list(learning_rates)})
    settings = {key: value for key, value in settings.items() if value is not None}
    return space_from_dict({**settings, "candidates": entries}, source="command-line search space")
