"""The shared-forward runner: same embeddings as plain encode, one forward per text, real mteb end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from st_pooling import build_model
from st_pooling.cli import main
from st_pooling.evaluation.shared_forward import EmbeddingCache, SharedForwardEmbedder
from st_pooling.models import build_transformer, pooling_for
from st_pooling.modules.base import BaseNeeds
from st_pooling.modules.spec import PoolingSpec

SPECS = ["mean", "max", "cls", "last_token", "weighted_mean", "gem", "weighted_sum", "mltp"]


@pytest.fixture(scope="module")
def embedder():
    transformer = build_transformer("minilm", BaseNeeds(hidden_states=True))
    poolings = {spec: pooling_for(transformer, spec) for spec in SPECS}
    return SharedForwardEmbedder(transformer, poolings, batch_size=4, show_progress_bar=False, device="cpu")


def test_shared_forward_equals_plain_encode(embedder, sample_texts):
    for spec in SPECS:
        model = build_model("minilm", embedder.poolings[spec], device="cpu")
        plain = model.encode(sample_texts, batch_size=3, convert_to_numpy=True)
        shared = embedder.embeddings(sample_texts, spec)
        assert np.abs(plain - shared).max() <= 1e-5, spec


def test_each_text_goes_through_the_transformer_once(embedder, sample_texts):
    texts = sample_texts + ["one more sentence", "and another"]
    before = embedder.forward_texts
    for spec in SPECS:
        embedder.embeddings(texts + texts[:2], spec)
    assert embedder.forward_texts - before == len(set(texts) - set(sample_texts))


def test_cache_stays_within_its_byte_budget():
    cache = EmbeddingCache(max_bytes=3 * 4 * 8)
    for i in range(10):
        cache.put(f"t{i}", np.zeros((2, 4), np.float32))
    assert len(cache) == 3 and cache.nbytes <= 3 * 4 * 8
    assert "t9" in cache and "t0" not in cache


def test_pooling_specs_parse_options():
    spec = PoolingSpec.parse("mltp:layer_summary=last_token,layers=4+5+6,num_latents=4")
    assert spec.pooling == "mltp"
    assert dict(spec.options) == {"layer_summary": "last_token", "layers": [4, 5, 6], "num_latents": 4}
    assert PoolingSpec.parse("gem:initial_p=2.5,exclude_first_token=true").options == {
        "initial_p": 2.5, "exclude_first_token": True}
    with pytest.raises(ValueError, match="key=value"):
        PoolingSpec.parse("gem:oops")


def test_compare_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["compare", "--poolings", "mean", "max", "gem", "--max-items", "24", "--n-resamples", "200",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    report = (out / "results.md").read_text()
    for task in ["LeeSTS", "PangLeePolarityClassification", "MiniNewsgroupsClustering", "LeeRetrieval"]:
        assert task in report
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 * 3
    scores = {(r["task"], r["pooling"]): float(r["score"]) for r in rows}
    assert all(-1.0 <= s <= 1.0 for s in scores.values())
    compared = [r for r in rows if r["pooling"] != "mean"]
    assert all(r["ci_low"] != "" and float(r["ci_low"]) <= float(r["difference"]) <= float(r["ci_high"])
               for r in compared)
    for kind in ["STS", "Classification", "Clustering", "Retrieval"]:
        assert (out / f"results_{kind}.png").stat().st_size > 1000
    # mteb's own results layout, one folder per configuration
    meta_files = sorted(p.parent.parent.name for p in (out / "mteb" / "results").rglob("model_meta.json"))
    assert meta_files == ["st-pooling__minilm__gem", "st-pooling__minilm__max", "st-pooling__minilm__mean"]
    assert "Reproduce with" in capsys.readouterr().out


def test_compare_rejects_unknown_pooling_before_work(tmp_path, capsys):
    code = main(["compare", "--poolings", "mean", "avg", "--output", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "unknown pooling 'avg'" in capsys.readouterr().err


def test_compare_on_saved_trained_models_gives_mteb_scores_of_the_models_loaded_plainly(tmp_path):
    """Saved models are compared as they are: a head trained on the frozen base (at another max_seq_length, so it
    gets a forward pass of its own) scores exactly what mteb gives the same folder loaded with SentenceTransformer;
    one on the base's own settings shares the base's forward pass."""
    import mteb
    import torch
    from sentence_transformers import SentenceTransformer

    from st_pooling.evaluation.compare import compare_poolings, shared_forward_groups
    from st_pooling.evaluation.shared_forward import ModelEntry
    from st_pooling.evaluation.tasks import get_tasks

    torch.manual_seed(0)
    folders = {}
    for name, max_seq_length in (("gem-64", 64), ("latent-256", 256)):
        model = build_model("minilm", name.split("-")[0].replace("latent", "latent_attention"),
                            max_seq_length=max_seq_length, device="cpu", native="mean")
        with torch.no_grad():
            for parameter in model[1].parameters():  # a head that is not its native pooling any more
                parameter.add_(0.05 * torch.randn_like(parameter))
        folders[name] = tmp_path / name
        model.save(str(folders[name]))
    entries = [ModelEntry.load(folder) for folder in folders.values()]
    groups = shared_forward_groups("minilm", [PoolingSpec.parse("mean"), *entries])
    assert sorted(sorted(poolings) for _, poolings in groups) == [["gem-64"], ["latent-256", "mean"]]

    tasks = get_tasks(["LeeSTS", "PangLeePolarityClassification"], max_items=24)
    comparison = compare_poolings("minilm", [PoolingSpec.parse("mean"), *entries], tasks, tmp_path / "run",
                                  n_resamples=100, show_progress_bar=False, device="cpu")
    for name, folder in folders.items():
        plain = SentenceTransformer(str(folder), device="cpu")
        results = mteb.evaluate(plain, get_tasks(["LeeSTS", "PangLeePolarityClassification"], max_items=24),
                                cache=None, show_progress_bar=False)
        for result in results.task_results:
            assert comparison.scores[name][result.task_name] == pytest.approx(result.get_score(), abs=1e-6), name
    with pytest.raises(FileNotFoundError, match="not a saved sentence-transformers model"):
        ModelEntry.load(tmp_path)


def test_classification_labels_read_as_one_array_give_mteb_every_score_unchanged():
    """compare hands mteb's classification metrics the test labels as one array (with_label_array) instead of
    datasets' lazy column: every metric of every experiment must be what a plain mteb.evaluate gives."""
    import mteb
    from datasets import Column

    from st_pooling.evaluation.compare import with_label_array
    from st_pooling.evaluation.tasks import get_tasks

    model = build_model("minilm", "mean", device="cpu")
    seen = []
    task = with_label_array(get_tasks(["PangLeePolarityClassification"], max_items=40)[0])
    calculate = task._calculate_scores

    def spy(y_test, y_pred):
        seen.append(type(y_test))
        return calculate(y_test, y_pred)

    task._calculate_scores = spy
    wrapped = mteb.evaluate(model, task, cache=None, show_progress_bar=False).task_results[0]
    plain = mteb.evaluate(model, get_tasks(["PangLeePolarityClassification"], max_items=40), cache=None,
                          show_progress_bar=False).task_results[0]
    assert seen and all(kind is Column for kind in seen)  # what mteb passes today: the case the wrapper exists for
    strip = lambda scores: {k: v for k, v in scores["test"][0].items() if "time" not in k}  # noqa: E731
    assert strip(wrapped.scores) == strip(plain.scores)
    assert strip(plain.scores)["scores_per_experiment"] and "f1" in strip(plain.scores)
