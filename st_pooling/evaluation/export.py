"""Leaderboard-ready export of a saved st-pooling model: MTEB metadata plus results.

The MTEB results repository (and mteb's own ``ResultCache``) keep one folder per model
revision::

    <root>/results/<name with "/" as "__">/<revision>/
        model_meta.json       # ModelMeta.to_dict()
        <TaskName>.json       # one TaskResult per task
        run_settings.jsonl    # package versions and encode settings of the run

:func:`model_meta_for` builds the ``ModelMeta`` (validated by mteb's own pydantic class),
:func:`export_results` writes the folder, using ``ResultCache.save_to_cache`` itself so
the layout and file contents are mteb's, into a staging folder that is renamed into place
only when complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from st_pooling.atomic import replace_folder

if TYPE_CHECKING:
    from mteb.models import ModelMeta, SentenceTransformerEncoderWrapper
    from mteb.results import TaskResult
    from sentence_transformers import SentenceTransformer

DEFAULT_REVISION = "st-pooling"
FRAMEWORKS = ["Sentence Transformers", "PyTorch"]
_MODEL_META_FILE = "model_meta.json"
_RUN_SETTINGS_FILE = "run_settings.jsonl"


# ----------------------------------------------------------------------------- loader


def load_st_pooling_model(
    model_name: str,
    revision: str | None = None,
    *,
    model_path: str | None = None,
    device: str | None = None,
    **kwargs: Any,
) -> SentenceTransformerEncoderWrapper:
    """The ``ModelMeta.loader`` of exported models: rebuild the SentenceTransformer.

    From ``model_path`` (a saved folder) when given, else from the Hub by ``model_name``
    at ``revision``. st-pooling modules load as ordinary sentence-transformers modules,
    without ``trust_remote_code``. ``ModelMeta.load_model`` calls this with the meta's
    name, revision and ``loader_kwargs``.
    """
    from mteb.models import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    if model_path is not None:
        model = SentenceTransformer(str(model_path), device=device, **kwargs)
    else:
        model = SentenceTransformer(model_name, revision=revision, device=device, **kwargs)
    return SentenceTransformerEncoderWrapper(model)


# ----------------------------------------------------------------------------- ModelMeta


def _model_card_front_matter(model_path: Path) -> dict[str, Any]:
    """The YAML front matter of the saved model's README.md, or {} if there is none."""
    readme = model_path / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end == -1:
        return {}
    try:
        parsed = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _languages_from_card(card: dict[str, Any]) -> list[str] | None:
    """Model-card language codes ("en") as mteb language-script codes ("eng-Latn")."""
    from mteb.languages.iso_mappings import _hf_langs_to_iso_lang_scripts

    return _hf_langs_to_iso_lang_scripts(card.get("language"))


def _input_embedding_parameters(model: SentenceTransformer) -> int | None:
    """Size of the token embedding matrix of the model's transformer, if it has one."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            embeddings = module.get_input_embeddings()
            if embeddings is not None and hasattr(embeddings, "weight"):
                return int(embeddings.weight.numel())
    return None


def _check_model_name(name: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    parts = name.split("/")
    problem = None
    if len(parts) != 2 or not all(part.strip() for part in parts):
        problem = "it has no organization part"
    else:
        try:
            validate_repo_id(name)
        except HFValidationError as error:
            problem = str(error).splitlines()[0]
    if problem:
        raise ValueError(
            f"model name {name!r} is not a valid Hugging Face Hub id ({problem}): give it as "
            "'organization/model_name', the name it has, or will have, on the Hub"
        )


def _check_results_belong_to(meta: ModelMeta, source_folder: Path | None, verify_source: bool) -> None:
    """Refuse results that another model produced: the run's recorded ModelMeta (beside the results) must report the
    exported model's parameter count and embedding dimension."""
    if not verify_source or source_folder is None:
        return
    recorded_file = source_folder / _MODEL_META_FILE
    if not recorded_file.is_file():
        raise ValueError(f"{source_folder} does not record which model produced its results (no {_MODEL_META_FILE}): "
                         "export results of an mteb run (a ResultCache folder), or pass --unverified-results "
                         "(verify_source=False) if you know they are this model's")
    try:
        recorded = json.loads(recorded_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{recorded_file} cannot be read ({error}): rerun the evaluation") from None
    mismatches = [f"{field} {recorded.get(field)} there, {getattr(meta, field)} here"
                  for field in ("n_parameters", "embed_dim")
                  if recorded.get(field) is not None and recorded.get(field) != getattr(meta, field)]
    if mismatches:
        raise ValueError(f"the results in {source_folder} were produced by another model "
                         f"({recorded.get('name')}: {'; '.join(mismatches)}): evaluate the exported model itself "
                         "and export those results")


def _check_revision(revision: str) -> None:
    if not revision or "/" in revision or "\\" in revision or revision in {".", ".."}:
        raise ValueError(
            f"revision {revision!r} is used as a folder name: give a non-empty name without slashes "
            "(a Hub commit hash, or e.g. 'st-pooling')"
        )


def model_meta_for(
    model_path_or_model: str | Path | SentenceTransformer,
    name: str,
    revision: str = DEFAULT_REVISION,
    *,
    model_path: str | Path | None = None,
    license: str | None = None,  # noqa: A002 -- ModelMeta's field name
    languages: list[str] | None = None,
    release_date: str | _dt.date | None = None,
    open_weights: bool = True,
    reference: str | None = None,
    adapted_from: str | None = None,
    training_datasets: set[str] | None = None,
    public_training_code: str | None = None,
    public_training_data: str | bool | None = None,
    use_instructions: bool = False,
    citation: str | None = None,
    contacts: list[str] | None = None,
) -> ModelMeta:
    """MTEB ``ModelMeta`` for a saved st-pooling model, validated by mteb's own class.

    Args:
        model_path_or_model: the saved model folder, or the loaded SentenceTransformer (then
            ``model_path`` must name the folder it was saved to, for the loader).
        name: "organization/model_name", as on the Hub.
        revision: the revision folder name; use the Hub commit hash once published.
        model_path: the saved folder when a loaded model is passed first.
        license: defaults to the ``license`` of the folder's model card (README.md); with
            ``open_weights`` a license is required.
        languages: mteb codes like ["eng-Latn"]; defaults to the model card's languages.
        release_date: defaults to today.
        Other arguments are ModelMeta fields of the same name.

    Counts: ``n_parameters`` is every parameter of the SentenceTransformer (transformer,
    pooling head and any other module), ``n_embedding_parameters`` the token embedding
    matrix, ``memory_usage_mb`` the parameters' bytes in their stored dtypes.
    """
    from mteb.models import ModelMeta
    from mteb.models.model_meta import ScoringFunction
    from pydantic import ValidationError
    from sentence_transformers import SentenceTransformer

    _check_model_name(name)
    _check_revision(revision)
    if isinstance(model_path_or_model, SentenceTransformer):
        if model_path is None:
            raise ValueError(
                "a loaded model has no folder for the loader to rebuild it from: save it with "
                "model.save(folder) and pass the folder, or pass model_path=folder"
            )
        model = model_path_or_model
        folder = Path(model_path).resolve()
    else:
        folder = Path(model_path_or_model).resolve()
        if not (folder / "modules.json").is_file():
            raise ValueError(
                f"{folder} is not a saved SentenceTransformer folder (no modules.json): "
                "save the model with model.save(folder) first"
            )
        model = SentenceTransformer(str(folder), device="cpu")

    card = _model_card_front_matter(folder)
    if license is None:
        card_license = card.get("license")
        license = str(card_license).lower() if card_license else None  # noqa: A001
    if open_weights and license is None:
        raise ValueError(
            "open-weights models need a license: pass license='apache-2.0' (or the one that "
            "applies; it must allow the base model's license), or add it to the model card"
        )
    embed_dim = model.get_embedding_dimension()
    if embed_dim is None:
        raise ValueError("the model does not report its embedding dimension (get_embedding_dimension() is None)")
    similarity = model.similarity_fn_name or "cosine"
    parameters = list(model.parameters())
    fields: dict[str, Any] = dict(
        loader=load_st_pooling_model,
        loader_kwargs={"model_path": str(folder)},
        name=name,
        revision=revision,
        release_date=str(release_date or _dt.date.today().isoformat()),
        languages=languages if languages is not None else _languages_from_card(card),
        n_parameters=sum(p.numel() for p in parameters),
        n_embedding_parameters=_input_embedding_parameters(model),
        memory_usage_mb=round(sum(p.numel() * p.element_size() for p in parameters) / 2**20, 1),
        max_tokens=model.max_seq_length,
        embed_dim=int(embed_dim),
        license=license,
        open_weights=open_weights,
        public_training_code=public_training_code,
        public_training_data=public_training_data,
        framework=list(FRAMEWORKS),
        reference=reference,
        similarity_fn_name=ScoringFunction(similarity),
        use_instructions=use_instructions,
        training_datasets=training_datasets,
        adapted_from=adapted_from if adapted_from is not None else model.model_card_data.base_model,
        modalities=["text"],
        model_type=["dense"],
        citation=citation,
        contacts=contacts,
    )
    try:
        return ModelMeta(**fields)
    except ValidationError as error:
        raise ValueError(f"mteb's ModelMeta rejected the metadata for {name}: {error}") from error


# ----------------------------------------------------------------------------- results


def _task_result_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.glob("*.json") if p.name != _MODEL_META_FILE and p.is_file()
    )


def _find_results_folder(
    path: Path, source_name: str | None, source_revision: str | None
) -> Path:
    """The folder holding <Task>.json files: ``path`` itself, or one revision folder of the
    ResultCache rooted at ``path`` (picked by source_name/source_revision when several)."""
    if _task_result_files(path):
        return path
    results_root = path / "results"
    if not results_root.is_dir():
        raise ValueError(
            f"{path} holds no <Task>.json files and is not a results cache (no results/ folder)"
        )
    candidates = sorted({p.parent for p in results_root.glob("*/*/*.json") if p.name != _MODEL_META_FILE})
    if source_name is not None:
        wanted = source_name.replace("/", "__").replace(" ", "_")
        candidates = [c for c in candidates if c.parent.name == wanted]
    if source_revision is not None:
        candidates = [c for c in candidates if c.name == source_revision]
    if len(candidates) != 1:
        found = [f"{c.parent.name}/{c.name}" for c in candidates]
        raise ValueError(
            f"expected exactly one model revision folder with results under {results_root}, "
            f"found {found}: pass source_name= and source_revision= to pick one"
        )
    return candidates[0]


def _read_task_result(path: Path) -> TaskResult:
    from mteb.results import TaskResult

    try:
        return TaskResult.from_disk(path)
    except (KeyError, ValueError, TypeError, AttributeError) as error:  # mteb's own parse errors, e.g. a missing key
        raise ValueError(f"{path} is not an mteb task result ({type(error).__name__}: {error}): give a folder of "
                         "mteb <Task>.json files or an mteb results cache") from None


def _collect_task_results(
    results: str | Path | Any, source_name: str | None, source_revision: str | None
) -> tuple[list[TaskResult], Path | None]:
    """Task results to export and the folder they came from (None for in-memory results)."""
    from mteb import ResultCache
    from mteb.results import ModelResult, TaskResult

    if isinstance(results, ModelResult):
        return list(results.task_results), None
    if isinstance(results, ResultCache):
        results = results.cache_path
    if isinstance(results, (str, Path)):
        folder = _find_results_folder(Path(results), source_name, source_revision)
        return [_read_task_result(p) for p in _task_result_files(folder)], folder
    if isinstance(results, Iterable):
        task_results = list(results)
        wrong = [type(r).__name__ for r in task_results if not isinstance(r, TaskResult)]
        if wrong:
            raise TypeError(f"results must be TaskResult objects, got {sorted(set(wrong))}")
        return task_results, None
    raise TypeError(
        "results must be a folder of <Task>.json files, a results cache (path or ResultCache), "
        f"a ModelResult or TaskResult objects; got {type(results).__name__}"
    )


def export_results(
    model_path: str | Path,
    results: str | Path | Any,
    output_dir: str | Path,
    name: str,
    revision: str = DEFAULT_REVISION,
    *,
    source_name: str | None = None,
    source_revision: str | None = None,
    overwrite: bool = False,
    verify_source: bool = True,
    **meta_fields: Any,
) -> Path:
    """Write ``<output_dir>/results/<name with / as __>/<revision>/`` for the MTEB results
    repository: ``model_meta.json``, one ``<Task>.json`` per task and ``run_settings.jsonl``.

    Args:
        model_path: the saved st-pooling model folder (for the metadata).
        results: the evaluation results: a folder of ``<Task>.json`` files, a ResultCache
            (or its root folder) holding one model revision (else pick it with
            ``source_name``/``source_revision``), a ``ModelResult`` from ``mteb.evaluate``,
            or ``TaskResult`` objects.
        output_dir: root of the export; created if missing.
        name: "organization/model_name" to publish under.
        revision: revision folder name.
        overwrite: replace an existing export of the same name and revision.
        verify_source: refuse results from a folder whose recorded ModelMeta reports another parameter count or
            embedding dimension than the exported model (or that records none).
        meta_fields: passed on to :func:`model_meta_for` (license, languages, ...).

    The files are written by mteb's ``ResultCache.save_to_cache`` into a staging folder
    inside ``output_dir`` and renamed into place when complete, so a failed export never
    leaves a half-written folder (an overwritten one is swapped out the same way). The
    local model path is left out of the exported ``loader_kwargs`` (it means nothing on
    another machine; the Hub name and revision identify the model). A ``run_settings.jsonl``
    next to the source results is kept; for in-memory results mteb writes one describing
    the current environment.

    Returns:
        The revision folder written.
    """
    from mteb import ResultCache

    meta = model_meta_for(model_path, name, revision, **meta_fields)
    task_results, source_folder = _collect_task_results(results, source_name, source_revision)
    _check_results_belong_to(meta, source_folder, verify_source)
    if not task_results:
        raise ValueError(f"no task results found in {results!r}: nothing to export")
    task_names = [r.task_name for r in task_results]
    duplicated = sorted({t for t in task_names if task_names.count(t) > 1})
    if duplicated:
        raise ValueError(f"several results for the same task(s) {duplicated}: export one per task")

    output_root = Path(output_dir)
    output_root.mkdir(parents=True, exist_ok=True)
    destination = output_root / "results" / meta.model_name_as_path() / revision
    if destination.exists() and not overwrite:
        raise FileExistsError(f"{destination} already exists: pass overwrite=True to replace it")

    portable_meta = meta.model_copy(update={"loader_kwargs": {}})
    staging_root = Path(tempfile.mkdtemp(prefix=".st-pooling-export-", dir=output_root))
    try:
        staging_cache = ResultCache(cache_path=staging_root)
        for task_result in task_results:
            staging_cache.save_to_cache(task_result, portable_meta)
        staged = staging_root / "results" / meta.model_name_as_path() / revision
        if source_folder is not None and (source_folder / _RUN_SETTINGS_FILE).is_file():
            shutil.copy2(source_folder / _RUN_SETTINGS_FILE, staged / _RUN_SETTINGS_FILE)
        replace_folder(staged, destination)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    return destination
