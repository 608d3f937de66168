"""How good is an approximate index? Recall against exact search on the same vectors, and
nDCG@10 / recall@100 on a retrieval task searched through the index, beside mteb's own figures."""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytrec_eval
from sentence_transformers import SentenceTransformer

from st_pooling.index.build import build_index
from st_pooling.index.prompts import encode_normalized
from st_pooling.index.corpus import Document, documents_from_mapping
from st_pooling.index.search import SearchIndex


class RetrievalDataLike(Protocol):
    """Anything with ``corpus`` {doc id: text}, ``queries`` {query id: text} and ``qrels``
    {query id: {doc id: gain}} (such as :class:`st_pooling.data.RetrievalData`)."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass
class IndexEvaluation:
    """The figures of one evaluation; ``mteb`` is filled by :func:`evaluate_with_mteb`."""

    index_type: str
    index_params: dict
    documents: int
    queries: int
    skipped_empty_documents: int
    recall_vs_exact: dict[str, float]
    through_index: dict[str, float]
    exact: dict[str, float]
    encode_seconds: float
    index_seconds: float
    search_ms_per_query: float
    mteb: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recall_against_exact(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k (the usual ANN recall@k)."""
    if approx_ids.shape[0] != exact_ids.shape[0]:
        raise ValueError("approx_ids and exact_ids must have one row per query")
    overlaps = [len(set(a[:k].tolist()) & set(e[:k].tolist()) - {-1}) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(overlaps)) / k


def retrieval_scores(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                     k_values: tuple[int, ...] = (10, 100)) -> dict[str, float]:
    """nDCG@k and recall@k averaged over the judged queries, computed by pytrec_eval as mteb does."""
    measures = {f"ndcg_cut.{','.join(map(str, k_values))}", f"recall.{','.join(map(str, k_values))}"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    scores = {}
    for k in k_values:
        scores[f"ndcg_at_{k}"] = float(np.mean([q[f"ndcg_cut_{k}"] for q in per_query.values()]))
        scores[f"recall_at_{k}"] = float(np.mean([q[f"recall_{k}"] for q in per_query.values()]))
    return scores


def _run_from_search(index: SearchIndex, query_ids: list[str], scores: np.ndarray, ids: np.ndarray) -> dict:
    doc_ids = np.array(index.ids_for(ids), dtype=object).reshape(ids.shape)
    return {qid: {d: float(s) for d, s in zip(row_ids, row_scores) if d}
            for qid, row_ids, row_scores in zip(query_ids, doc_ids, scores)}


def evaluate_index(model: SentenceTransformer, data: RetrievalDataLike, *, index_type: str = "hnsw",
                   pq: bool = False, index_params: dict | None = None, k: int = 10, batch_size: int = 64,
                   work_dir: str | Path | None = None, show_progress: bool = False) -> IndexEvaluation:
    """Build an exact (flat) and a ``index_type`` index over the same vectors of ``data.corpus``, save and
    load both through the normal path, search the judged queries, and report recall@k of the index
    against exact search plus nDCG@10 / recall@100 through each. Empty documents are skipped (counted)."""
    documents = [d for d in documents_from_mapping({i: t for i, t in data.corpus.items() if t.strip()})]
    relevant = {q: {d: g for d, g in judged.items() if g > 0} for q, judged in data.qrels.items()}
    qrels = {q: judged for q, judged in relevant.items() if judged and q in data.queries}
    query_ids = [q for q in data.queries if q in qrels]
    began = time.perf_counter()
    vectors = encode_normalized(model, [d.encoding_text for d in documents], batch_size)
    encode_seconds = time.perf_counter() - began
    query_vectors = encode_normalized(model, [data.queries[q] for q in query_ids], batch_size, role="query")
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        searched, index_seconds, search_seconds = {}, 0.0, 0.0
        for name, kind in (("exact", "flat"), ("approx", index_type)):
            report = build_index(model, documents, Path(scratch) / name, index_type=kind, id_type="string",
                                 pq=pq and name == "approx", index_params=index_params if name == "approx" else None,
                                 embeddings=vectors, show_progress=show_progress)
            index = SearchIndex.load(Path(scratch) / name, model)
            began = time.perf_counter()
            scores, ids = index.search_vectors(query_vectors, max(k, 100))
            if name == "approx":
                index_seconds, search_seconds = report.index_seconds, time.perf_counter() - began
                spec = report.spec
            searched[name] = (index, scores, ids)
        runs = {name: _run_from_search(index, query_ids, scores, ids) for name, (index, scores, ids) in searched.items()}
    recall = recall_against_exact(searched["approx"][2], searched["exact"][2], k)
    return IndexEvaluation(
        index_type=spec.kind, index_params=spec.params, documents=len(documents), queries=len(query_ids),
        skipped_empty_documents=len(data.corpus) - len(documents), recall_vs_exact={f"recall_at_{k}": recall},
        through_index=retrieval_scores(runs["approx"], qrels), exact=retrieval_scores(runs["exact"], qrels),
        encode_seconds=encode_seconds, index_seconds=index_seconds,
        search_ms_per_query=1000 * search_seconds / max(1, len(query_ids)))


def evaluate_with_mteb(model: SentenceTransformer, task: Any, cache_dir: str | Path | None = None,
                       batch_size: int = 64) -> dict[str, float]:
    """nDCG@10 and recall@100 of ``model`` on ``task`` (an mteb retrieval task) as mteb computes them."""
    import mteb
    from mteb.types import EncodeKwargs

    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        result = mteb.evaluate(model, task, cache=mteb.ResultCache(cache_path=scratch), overwrite_strategy="always", encode_kwargs=EncodeKwargs(batch_size=batch_size),
                               show_progress_bar=False)
    scores = result.task_results[0].scores
    split = "test" if "test" in scores else next(iter(scores))
    main = scores[split][0]
    return {"ndcg_at_10": float(main["ndcg_at_10"]), "recall_at_100": float(main["recall_at_100"])}


def retrieval_data_from_task(task: Any) -> RetrievalDataLike:
    """The corpus, queries and qrels of an mteb retrieval task (a local st-pooling task gives its
    RetrievalData directly; a Hub task is loaded and its first subset's test split is used)."""
    from st_pooling.data import RetrievalData

    if hasattr(task, "local_data"):
        return task.local_data()
    task.load_data()
    subset = task.dataset.get("default") or next(iter(task.dataset.values()))
    split = subset.get("test") or next(iter(subset.values()))
    corpus = {row["id"]: Document(id=row["id"], text=row.get("text") or "", title=row.get("title") or "").encoding_text
              for row in split["corpus"]}
    queries = {row["id"]: row["text"] for row in split["queries"]}
    qrels = {q: dict(judged) for q, judged in split["relevant_docs"].items() if q in queries}
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)
