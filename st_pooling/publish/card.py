"""A Hub-ready model card for a saved st-pooling model.

``model.save(folder)`` writes sentence-transformers' generic card, which does not say that loading the model needs
``pip install st-pooling`` and ``import st_pooling``, and for a packaged base names no base model, language or
license. :func:`write_model_card` rewrites the folder's ``README.md`` with huggingface_hub's ``ModelCard``: the
front matter gets the license, languages, base model and tags; the body gets an st-pooling section (the pooling,
a link to its formula, its parameter count, install and load, base model, language, license, and for a trained
model the training data, loss and dev curve from ``st_pooling_training.json``), and sentence-transformers' own usage
snippet gets the install and import it needs. Rewriting is idempotent: the section is replaced, not repeated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TRAINING_SUMMARY = "st_pooling_training.json"
SECTION_START = "<!-- st-pooling:start -->"
SECTION_END = "<!-- st-pooling:end -->"
POOLINGS_DOC = "docs/poolings.md"
PACKAGED_BASE_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2",
                     "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""The Hub ids of the packaged bases (README "Data and models": both Apache-2.0, English)."""
KNOWN_BASES = {hub_id: {"license": "apache-2.0", "language": ["en"]} for hub_id in PACKAGED_BASE_IDS.values()}
LOSS_NAMES = {"mnrl": "MultipleNegativesRankingLoss", "cosent": "CoSENTLoss", "angle": "AnglELoss"}


# ----------------------------------------------------------------------------- what the folder says


def pooling_modules(folder: str | Path) -> list[dict[str, Any]]:
    """The st-pooling modules of a saved model: name, class, folder, config and parameter count (from the
    safetensors header, never unpickled)."""
    from st_pooling.modules import POOLINGS

    root = Path(folder)
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        raise ValueError(f"{root} is not a saved SentenceTransformer folder (no modules.json): save the model with "
                         "model.save(folder) first")
    by_class = {f"{cls.__module__}.{cls.__name__}": (name, cls) for name, cls in POOLINGS.items()}
    found = []
    for entry in json.loads(modules_file.read_text(encoding="utf-8")):
        if entry.get("type") not in by_class:
            continue
        name, cls = by_class[entry["type"]]
        module_dir = root / entry.get("path", "")
        config_file = module_dir / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        found.append({"name": name, "class": cls, "path": module_dir, "config": config,
                      "parameters": safetensors_parameters(module_dir / "model.safetensors")})
    return found


def safetensors_parameters(path: Path) -> int:
    """Number of values stored in a safetensors file (0 when there is none); reads only the header."""
    if not path.is_file():
        return 0
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="numpy") as handle:
        for key in handle.keys():  # noqa: SIM118 -- safe_open has keys(), not iteration
            count = 1
            for size in handle.get_slice(key).get_shape():
                count *= size
            total += count
    return total


def training_summary(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / TRAINING_SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): train again or delete it") from None


def base_model_of(model: SentenceTransformer | None) -> str | None:
    """The Hub id of ``model``'s base: its transformer's name when that is a Hub id, the packaged bases' ids."""
    if model is None:
        return None
    from st_pooling.models import PACKAGED_BASES

    card_base = model.model_card_data.base_model
    if card_base:
        return card_base
    config = getattr(getattr(model[0], "auto_model", None) or getattr(model[0], "model", None), "config", None)
    source = str(getattr(config, "_name_or_path", "") or "")
    if not source:
        return None
    for short_name, locate in PACKAGED_BASES.items():
        try:
            if Path(source).resolve() == Path(locate()).resolve():
                return PACKAGED_BASE_IDS[short_name]
        except (ImportError, OSError, ValueError):  # that packaged base is not installed here
            continue
    return None if Path(source).exists() else source


# ----------------------------------------------------------------------------- the card


def write_model_card(folder: str | Path, model: SentenceTransformer | None = None, *, model_id: str | None = None,
                     base_model: str | None = None, language: str | list[str] | None = None,
                     license: str | None = None) -> Path:  # noqa: A002 -- the card field's name
    """Rewrite ``folder/README.md`` as a Hub-ready card naming st-pooling, the pooling and the training.

    Args:
        folder: the saved model folder (``model.save(folder)`` first).
        model: the saved model, if at hand: its base model is recognised (packaged bases included).
        model_id: the Hub id the model will have (used in the load example), else the folder.
        base_model, language, license: override what the card says (defaults: the existing card, then the
            base model's known values).

    Returns the README path.
    """
    from huggingface_hub import ModelCard, ModelCardData

    root = Path(folder)
    poolings = pooling_modules(root)
    readme = root / "README.md"
    card = ModelCard.load(readme) if readme.is_file() else ModelCard(f"---\n---\n# {root.name}\n")
    data = card.data.to_dict() if card.data is not None else {}
    base = base_model or data.get("base_model") or base_model_of(model)
    known = KNOWN_BASES.get(base or "", {})
    languages = language or data.get("language") or known.get("language")
    languages = [languages] if isinstance(languages, str) else languages
    license = license or data.get("license") or known.get("license")  # noqa: A001
    tags = list(dict.fromkeys([*(data.get("tags") or []), "st-pooling",
                               *(f"pooling:{p['name']}" for p in poolings)]))
    data.update({key: value for key, value in {"base_model": base, "language": languages, "license": license,
                                                "tags": tags}.items() if value})
    summary = training_summary(root)
    section = _section(poolings, model_id or "path/to/this-model-folder", base, languages, license, summary)
    body = _with_st_pooling_usage(_without_section(card.text), model_id)
    text = _insert_after_title(body, section)
    ModelCard(f"---\n{ModelCardData(**data).to_yaml()}\n---\n{text}").save(readme)
    return readme


def _without_section(text: str) -> str:
    start, end = text.find(SECTION_START), text.find(SECTION_END)
    if start == -1 or end == -1:
        return text
    return text[:start] + text[end + len(SECTION_END):].lstrip("\n")


def _with_st_pooling_usage(text: str, model_id: str | None) -> str:
    """sentence-transformers' usage snippet, with the install and import an st-pooling model needs (and the Hub id)."""
    if model_id:
        text = text.replace('"sentence_transformers_model_id"', json.dumps(model_id))
    if "import st_pooling" in text:
        return text
    text = text.replace("pip install -U sentence-transformers\n", "pip install -U sentence-transformers st-pooling\n")
    return text.replace("from sentence_transformers import SentenceTransformer\n",
                        "import st_pooling  # registers st-pooling's modules with sentence-transformers\n"
                        "from sentence_transformers import SentenceTransformer\n", 1)


def _insert_after_title(text: str, section: str) -> str:
    lines = text.lstrip("\n").split("\n")
    if lines and lines[0].startswith("# "):
        return "\n".join([lines[0], "", section, *lines[1:]])
    return section + "\n" + "\n".join(lines)


def pooling_doc_link(cls: type) -> str:
    """A link to the pooling's formula in docs/poolings.md (by the section that lists it)."""
    if not cls.learnable:
        anchor = "parameter-free"
    elif cls.__module__.endswith((".latent", ".multilayer")):
        anchor = "attention-heads-must-be-trained-to-be-useful-unless-they-start-natively"
    else:
        anchor = "learnable-reductions"
    base = _docs_base()
    if not base:  # no source URL in the package metadata: name the file and section
        return f"`{POOLINGS_DOC}` (section `#{anchor}`) in the st-pooling sources"
    return f"[{POOLINGS_DOC}#{anchor}]({base}{POOLINGS_DOC}#{anchor})"


def _docs_base() -> str:
    """The project's source URL from the installed package's metadata, else a path within its source tree."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("st-pooling").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in {"source", "repository", "homepage"} and url.strip():
            return url.strip().rstrip("/") + "/blob/main/"
    return ""


def _section(poolings: list[dict[str, Any]], model_ref: str, base: str | None, languages: list[str] | None,
             license: str | None, summary: dict[str, Any] | None) -> str:  # noqa: A002
    lines = [SECTION_START, "## st-pooling", ""]
    if poolings:
        for pooling in poolings:
            options = {k: v for k, v in pooling["config"].items()
                       if k not in ("embedding_dimension", "st_pooling_config_format") and v not in (None, False)}
            lines.append(f"This model pools token states with **`{pooling['name']}`** "
                         f"(`st_pooling.{pooling['class'].__name__}`, {pooling['parameters']:,} parameters"
                         f"{', options ' + json.dumps(options) if options else ''}); formula: "
                         f"{pooling_doc_link(pooling['class'])}.")
    else:
        lines.append("This model holds no st-pooling pooling module.")
    lines += ["", "Loading it needs the st-pooling package, imported before sentence-transformers loads the model "
              "(it registers the pooling classes; no `trust_remote_code` is needed):", "", "```bash",
              "pip install st-pooling", "```", "", "```python", "import st_pooling",
              "from sentence_transformers import SentenceTransformer", "",
              f"model = SentenceTransformer({model_ref!r})", "embeddings = model.encode([\"A sentence.\"])", "```", "",
              f"- **Base model:** {base or 'not recorded'}",
              f"- **Language:** {', '.join(languages) if languages else 'not recorded'}",
              f"- **License:** {license or 'not recorded'}"]
    lines += _training_lines(summary)
    lines += [SECTION_END, ""]
    return "\n".join(lines)


def _training_lines(summary: dict[str, Any] | None) -> list[str]:
    if summary is None:
        return ["- **Training:** none recorded by st-pooling (the pooling is evaluated as built)"]
    config = summary.get("config") or {}
    train, dev = summary.get("train") or {}, summary.get("dev")
    loss = config.get("loss") or ("cosent" if train.get("kind") == "scored_pairs" else "mnrl")
    path = "frozen-feature fast path" if config.get("fast_path") else "SentenceTransformerTrainer"
    lines = ["", "### Training", "",
             f"- **Training data:** {train.get('source') or 'given data'} ({train.get('kind')}, "
             f"{_number(train.get('rows'))} rows)",
             f"- **Dev data:** {dev.get('source') or 'given data'} ({_number(dev.get('rows'))} rows)" if dev else
             "- **Dev data:** none",
             f"- **Loss:** {LOSS_NAMES.get(str(loss).lower(), loss)}",
             f"- **How:** {config.get('mode', 'head')} mode, {path}, {config.get('epochs')} epoch(s), seed "
             f"{config.get('seed')}; best epoch {summary.get('best_epoch')} "
             f"({summary.get('dev_metric')} {_number(summary.get('best_dev_score'))})"]
    history = summary.get("history") or []
    if history:
        lines += ["", "Dev curve:", "", "| epoch | train loss | dev score |", "|---|---|---|"]
        lines += [f"| {r.get('epoch')} | {_number(r.get('train_loss'))} | {_number(r.get('dev_score'))} |"
                  for r in history]
    return lines


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
