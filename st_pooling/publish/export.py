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

A leaderboard export (the default) is what the MTEB results repository accepts: the revision is a commit id (the Hub
commit holding the saved files, or a content hash the user opts into, see :mod:`st_pooling.publish.revision`), every
task is one mteb knows with all its evaluation splits (local tasks stay in the local report), the folder passes
:func:`st_pooling.publish.submission.check_submission`, and ``mteb_model_implementation/<model>.py`` holds the
``ModelMeta`` to add to mteb by pull request. ``leaderboard=False`` writes a local results folder of any tasks.
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
    # mteb has no public converter from Hub language codes to its language-script codes; this private helper is the
    # one mteb itself uses for Hub models (mteb.models.model_meta), so the codes match what mteb expects.
    from mteb.languages.iso_mappings import _hf_langs_to_iso_lang_scripts

    return _hf_langs_to_iso_lang_scripts(card.get("language"))


def _input_embedding_parameters(model: SentenceTransformer) -> int | None:
    """Size of the token embedding matrix of the model's transformer, if it has one."""
    import torch
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            weight = getattr(module.get_input_embeddings(), "weight", None)
            if isinstance(weight, torch.Tensor):
                return int(weight.numel())
    return None


TRAINING_SOURCE_TASKS = {"stsb": "STSBenchmark", "sick": "SICK-R", "sick-nli": "SICK-R"}
"""st-pooling training sources (``st_pooling_training.json``) -> the mteb task built from the same data set."""


def training_datasets_of(folder: Path, adapted_from: str | None) -> set[str] | None:
    """The mteb tasks whose data the saved model and its base were trained on: its st-pooling training source (if
    any) and the base's training datasets in mteb's registry. None (unknown) when the base is not in the registry or
    the training source has no known mteb task: then pass ``training_datasets`` explicitly."""
    from st_pooling.publish.card import training_summary

    datasets: set[str] = set()
    summary = training_summary(folder)
    if summary is not None:
        source = str((summary.get("train") or {}).get("source") or "")
        task = next((task for prefix, task in sorted(TRAINING_SOURCE_TASKS.items(), key=lambda kv: -len(kv[0]))
                     if source == prefix or source.startswith(prefix + "-")), None)
        if task is None:
            return None
        datasets.add(task)
    if not adapted_from:
        return None
    import mteb

    try:
        base_datasets = mteb.get_model_meta(adapted_from, fetch_from_hf=False).get_training_datasets()
    except KeyError:  # not in mteb's registry: its training data are unknown here
        return None
    return None if base_datasets is None else datasets | set(base_datasets)


def _check_model_name(name: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]  # public, re-exported lazily

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
    if adapted_from is None:
        adapted_from = card.get("base_model") or model.model_card_data.base_model
    if training_datasets is None:
        training_datasets = training_datasets_of(folder, adapted_from)
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
        adapted_from=adapted_from,
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


def _check_leaderboard_tasks(task_results: list[TaskResult]) -> None:
    """Refuse tasks mteb does not know (local tasks: they stay in the local report), results missing an evaluation
    split or subset of the task, and results computed on another revision of the task's data set."""
    import mteb

    local, incomplete, other_data = [], [], []
    for result in task_results:
        try:
            task = mteb.get_task(result.task_name)
        except KeyError:
            local.append(result.task_name)
            continue
        missing = result.get_missing_evaluations(task)
        if missing:
            incomplete.append(f"{result.task_name} (missing {missing})")
        if result.dataset_revision != task.metadata.revision:
            other_data.append(f"{result.task_name} (data revision {result.dataset_revision}, mteb's "
                              f"{task.metadata.revision})")
    if local:
        raise ValueError(f"tasks that mteb does not know cannot go to the leaderboard: {', '.join(sorted(local))}. "
                         "They stay in your local report (e.g. compare's results.md); export only mteb tasks' "
                         "results, or write a local results folder with leaderboard=False (--local)")
    if incomplete:
        raise ValueError(f"incomplete results: {'; '.join(incomplete)}: evaluate every split and subset of these "
                         "tasks (mteb.evaluate with the task as mteb defines it)")
    if other_data:
        raise ValueError(f"results on another data revision than mteb's: {'; '.join(other_data)}: evaluate on the "
                         "task's own data revision")


def export_results(
    model_path: str | Path,
    results: str | Path | Any,
    output_dir: str | Path,
    name: str,
    revision: str | None = None,
    *,
    revision_from_content: bool = False,
    leaderboard: bool = True,
    hub_token: str | None = None,
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
        name: "organization/model_name" to publish under (the Hub repository the model is pushed to).
        revision: a commit id; None: the Hub commit that holds the saved files (a leaderboard export; see
            :func:`st_pooling.publish.revision.resolve_revision`), for a local export a hash of the saved files.
        revision_from_content: use a hash of the saved files as the revision (a model not on the Hub).
        leaderboard: check everything the MTEB results repository checks and write the mteb ModelMeta file
            (``mteb_model_implementation/<model>.py``); False writes a local results folder (any task, any revision).
        hub_token: for reading a private Hub repository's commits.
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

    from st_pooling.publish.revision import resolve_revision

    _check_model_name(name)
    if not (Path(model_path) / "modules.json").is_file():
        raise ValueError(f"{model_path} is not a saved SentenceTransformer folder (no modules.json): save the model "
                         "with model.save(folder) first")
    revision = resolve_revision(model_path, name, revision, from_content=revision_from_content,
                                leaderboard=leaderboard, token=hub_token)
    if leaderboard:
        meta_fields.setdefault("reference", f"https://huggingface.co/{name}")
    meta = model_meta_for(model_path, name, revision, **meta_fields)
    task_results, source_folder = _collect_task_results(results, source_name, source_revision)
    _check_results_belong_to(meta, source_folder, verify_source)
    if not task_results:
        raise ValueError(f"no task results found in {results!r}: nothing to export")
    if leaderboard:
        _check_leaderboard_tasks(task_results)
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
        if leaderboard:
            _check_and_write_implementation(staged, portable_meta, Path(model_path), output_root)
        replace_folder(staged, destination)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    return destination


def _check_and_write_implementation(staged: Path, meta: ModelMeta, model_path: Path, output_root: Path) -> Path:
    """Refuse a staged leaderboard export that the results repository's checks would reject; write the mteb
    ModelMeta file for the pull request to mteb beside the results."""
    from st_pooling.publish.card import pooling_modules
    from st_pooling.publish.submission import check_submission, model_meta_module, module_file_name

    problems = check_submission(staged)
    if problems:
        raise ValueError("the export would not pass the MTEB results repository's checks: " + "; ".join(problems))
    poolings = "+".join(p["name"] for p in pooling_modules(model_path)) or "sentence-transformers"
    if meta.name is None:  # model_meta_for always names it
        raise ValueError("the ModelMeta has no name: give the model's Hub name (--name)")
    implementation = output_root / "mteb_model_implementation" / module_file_name(meta.name)
    implementation.parent.mkdir(parents=True, exist_ok=True)
    implementation.write_text(model_meta_module(meta, poolings), encoding="utf-8")
    return implementation
