"""The data loaders on the real files (row counts from ../shared/data/README.md), on malformed files,
and the dataclasses' validation and subsets."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from st_pooling.data import (
    ClassificationData,
    ClusteringData,
    DataFormatError,
    RetrievalData,
    STSData,
    gensim_test_data_dir,
    load_20newsgroups_classification,
    load_20newsgroups_clustering,
    load_banking77_classification,
    load_banking77_clustering,
    load_cisi,
    load_cranfield,
    load_lee_retrieval,
    load_lee_sts,
    load_mini_newsgroups,
    load_mr,
    load_pang_lee_polarity,
    load_sick,
    load_sst2,
    load_stsbenchmark,
    shared_data_dir,
)
from st_pooling.data.embedded import LEE_DOCUMENTS, LEE_SIMILARITIES
from st_pooling.data.types import stratified_indices


# --- real files: row counts and quirks ---------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize(("split", "rows"), [("train", 5749), ("dev", 1500), ("test", 1379)])
def test_stsbenchmark_row_counts(data_dir: Path, split: str, rows: int) -> None:
    data = load_stsbenchmark(data_dir / "stsbenchmark", split=split)
    assert len(data) == rows
    assert (data.min_score, data.max_score) == (0.0, 5.0)
    assert all("\t" not in s for s in data.sentences1 + data.sentences2)


@pytest.mark.shared_data
def test_stsbenchmark_quotes_and_trailing_columns(data_dir: Path) -> None:
    data = load_stsbenchmark(data_dir / "stsbenchmark", split="test")
    assert (data.sentences1[0], data.sentences2[0], data.scores[0]) == (
        "A girl is styling her hair.",
        "A girl is brushing her hair.",
        2.5,
    )
    # line 408 holds quote characters, line 626 two trailing source columns
    assert data.sentences1[407] == 'A young boy jumping into a pool that says "no diving".'
    assert data.sentences2[625].endswith("herding the cats every two hours.")
    assert "StackExchange" not in data.sentences2[625]


@pytest.mark.shared_data
@pytest.mark.parametrize(("split", "rows"), [("train", 4439), ("trial", 495), ("dev", 495), ("test", 4906)])
def test_sick_splits_from_semeval_column(data_dir: Path, split: str, rows: int) -> None:
    data = load_sick(data_dir / "sick", split=split)
    assert len(data) == rows
    assert all(1.0 <= score <= 5.0 for score in data.scores)


@pytest.mark.shared_data
def test_sick_first_training_pair(data_dir: Path) -> None:
    data = load_sick(data_dir / "sick", split="train")
    assert data.sentences1[0] == "A group of kids is playing in a yard and an old man is standing in the background"
    assert data.scores[0] == 4.5


@pytest.mark.shared_data
def test_sst2(data_dir: Path) -> None:
    data = load_sst2(data_dir / "sst2")
    assert (len(data.train_texts), len(data.test_texts)) == (60614, 872)
    assert set(data.test_labels) == {0, 1}
    small = load_sst2(data_dir / "sst2", max_train=1000)
    assert len(small.train_texts) == 1000 and len(small.test_texts) == 872
    full_share = sum(data.train_labels) / len(data.train_labels)
    assert abs(sum(small.train_labels) / 1000 - full_share) < 0.01


@pytest.mark.shared_data
def test_mr_fixed_seed_split(data_dir: Path) -> None:
    data = load_mr(data_dir / "mr")
    assert (len(data.train_texts), len(data.test_texts)) == (8530, 2132)
    assert Counter(data.test_labels) == {0: 1066, 1: 1066}
    # 22 lines hold the byte 0x85 (U+0085, NEL, once decoded): str.splitlines would cut them and
    # yield 10,685 sentences; 15 hold it inside the sentence (the rest at the end, stripped as whitespace)
    assert len(data.train_texts) + len(data.test_texts) == 10662
    assert sum("\x85" in text for text in data.train_texts + data.test_texts) == 15
    assert load_mr(data_dir / "mr").test_texts == data.test_texts
    assert load_mr(data_dir / "mr", seed=1).test_texts != data.test_texts


@pytest.mark.shared_data
def test_banking77(data_dir: Path) -> None:
    data = load_banking77_classification(data_dir / "banking77")
    assert (len(data.train_texts), len(data.test_texts)) == (10003, 3080)
    assert len(set(data.train_labels)) == 77
    assert data.train_texts[0] == "I am still waiting on my card?" and data.train_labels[0] == "card_arrival"
    clusters = load_banking77_clustering(data_dir / "banking77")
    assert len(clusters) == 3080 and len(set(clusters.labels)) == 77


@pytest.mark.shared_data
def test_20newsgroups_from_tarball(data_dir: Path) -> None:
    data = load_20newsgroups_classification(data_dir / "20newsgroups")
    assert (len(data.train_texts), len(data.test_texts)) == (11314, 7532)
    assert len(set(data.train_labels)) == 20
    assert data.test_labels[0] == "alt.atheism"
    assert data.test_texts[0].startswith("Re: about the bible quiz answers\n\nIn article")
    assert not any(text.startswith("From:") for text in data.test_texts)


@pytest.mark.shared_data
def test_20newsgroups_subject_only_clustering(data_dir: Path) -> None:
    data = load_20newsgroups_clustering(data_dir / "20newsgroups", subject_only=True)
    assert len(data) == 7532 and len(set(data.labels)) == 20
    assert data.texts[0] == "Re: about the bible quiz answers"
    assert all("\n" not in text for text in data.texts)


@pytest.mark.shared_data
def test_cranfield(data_dir: Path) -> None:
    data = load_cranfield(data_dir / "cranfield")
    assert (len(data.corpus), len(data.queries)) == (1400, 225)
    # 1,837 judgment rows, of which the 225 coded -1 (not relevant) are left out
    assert sum(len(judged) for judged in data.qrels.values()) == 1837 - 225
    assert Counter(g for judged in data.qrels.values() for g in judged.values()) == {4: 128, 3: 387, 2: 734, 1: 363}
    # first qrels row "1 184 2": code 2 -> gain 3; queries are positions, not the .I numbers
    assert data.qrels["1"]["184"] == 3
    assert data.queries["3"].startswith("what problems of heat conduction in composite slabs")
    assert data.corpus["471"] == ""  # an empty record in the collection, kept so the ids stay whole
    assert data.corpus["1"].startswith("experimental investigation of the aerodynamics of a wing in a slipstream .")
    assert data.corpus["1"].count("experimental investigation of the aerodynamics") == 1


@pytest.mark.shared_data
def test_cisi_keeps_only_judged_queries(data_dir: Path) -> None:
    data = load_cisi(data_dir / "cisi")
    assert (len(data.corpus), len(data.queries)) == (1460, 76)
    assert sum(len(judged) for judged in data.qrels.values()) == 3114
    assert set(data.qrels["1"]) >= {"28", "35", "38"} and set(data.qrels["1"].values()) == {1}
    assert "36" not in data.queries  # a query without judgments
    assert data.corpus["1"].startswith("18 Editions of the Dewey Decimal Classifications. The present study")
    assert data.queries["58"].startswith("Directions in Library Networking. Bibliographic control")


# --- the embedded default data (gensim) ---------------------------------------------------------------


def test_shared_data_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ST_POOLING_DATA_DIR", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("ST_POOLING_DATA_DIR", str(tmp_path / "typo"))
    assert shared_data_dir() == tmp_path / "typo"  # returned as given: the loader then names the bad path
    with pytest.raises(FileNotFoundError, match="typo/stsbenchmark does not exist"):
        load_stsbenchmark(shared_data_dir() / "stsbenchmark")


def test_gensim_missing_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import st_pooling.data.paths as paths

    monkeypatch.setattr(paths.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install gensim.*st-pooling\[embedded\]"):
        load_lee_sts()


def test_gensim_test_data_dir_holds_the_files() -> None:
    folder = gensim_test_data_dir()
    assert (folder / LEE_DOCUMENTS).is_file() and (folder / LEE_SIMILARITIES).is_file()


def test_lee_sts() -> None:
    data = load_lee_sts()
    assert len(data) == 1225 == 50 * 49 // 2
    assert len(set(data.sentences1 + data.sentences2)) == 50
    assert data.scores[:3] == [0.3, 0.24, 0.2]  # first row of the matrix, right of the diagonal
    assert min(data.scores) == pytest.approx(0.2) and max(data.scores) == pytest.approx(1.0)
    assert "£" in " ".join(data.sentences1)  # latin-1 byte 0xA3 decoded as the pound sign


def test_lee_retrieval() -> None:
    data = load_lee_retrieval()
    assert len(data.corpus) == 50 and len(data.queries) == 48
    assert sum(len(judged) for judged in data.qrels.values()) == 286
    assert data.ignore_identical_ids
    assert all(query not in judged for query, judged in data.qrels.items())
    assert all(data.queries[q] == data.corpus[q] for q in data.queries)
    # documents 1 and 14 (lee-00, lee-13) were rated fully similar: the top grade
    assert data.qrels["lee-00"]["lee-13"] == 3 and data.qrels["lee-13"]["lee-00"] == 3


def test_pang_lee_polarity_split() -> None:
    data = load_pang_lee_polarity()
    assert (len(data.train_texts), len(data.test_texts)) == (100, 100)
    assert Counter(data.train_labels) == Counter(data.test_labels) == {0: 50, 1: 50}
    assert not set(data.train_texts) & set(data.test_texts)
    assert load_pang_lee_polarity().test_texts == data.test_texts
    assert load_pang_lee_polarity(seed=7).test_texts != data.test_texts


def test_mini_newsgroups() -> None:
    data = load_mini_newsgroups()
    assert len(data) == 200
    assert Counter(data.labels) == {"alt.atheism": 100, "sci.space": 100}
    assert not any("Newsgroups:" in text.split("\n\n")[0] for text in data.texts)
    assert data.texts[0].startswith("Re: Biblical Rape\n\n")


class _RunsCode:
    """A pickled object whose loading would call os.getcwd: the unpickler must refuse it."""

    def __reduce__(self) -> tuple:
        return (os.getcwd, ())


def test_mini_newsgroups_refuses_arbitrary_classes(tmp_path: Path) -> None:
    (tmp_path / "mini_newsgroup").write_bytes(zlib.compress(pickle.dumps({"data": _RunsCode()}, protocol=2)))
    with pytest.raises(DataFormatError, match="refusing to load posix.getcwd|refusing to load nt.getcwd"):
        load_mini_newsgroups(tmp_path)


# --- malformed input --------------------------------------------------------------------------------


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_missing_folder_and_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist.*sts-test.csv"):
        load_stsbenchmark(tmp_path / "nowhere")
    _write(tmp_path / "cran", "cran.qry", ".I 1\n.W\nquery\n")
    with pytest.raises(FileNotFoundError, match="lacks cran.all.1400, cranqrel"):
        load_cranfield(tmp_path / "cran")


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no split 'validation'.*'dev'"):
        load_stsbenchmark(tmp_path, split="validation")


def test_stsbenchmark_too_few_columns(tmp_path: Path) -> None:
    good = "genre\tfile\t2012\t0001\t2.5\tA cat.\tA dog.\n"
    folder = _write(tmp_path, "sts-test.csv", good + "genre\tfile\t2012\t0002\t3.0\tonly one sentence\n")
    with pytest.raises(DataFormatError, match=r"sts-test.csv, line 2: expected at least 7"):
        load_stsbenchmark(folder)


def test_stsbenchmark_bad_score(tmp_path: Path) -> None:
    folder = _write(tmp_path, "sts-test.csv", "g\tf\t2012\t0001\tfive\tA cat.\tA dog.\n")
    with pytest.raises(DataFormatError, match=r"line 1: expected a number for the similarity score.*'five'"):
        load_stsbenchmark(folder)
    folder = _write(tmp_path, "sts-test.csv", "g\tf\t2012\t0001\t7.5\tA cat.\tA dog.\n")
    with pytest.raises(DataFormatError, match="line 1: similarity score 7.5 is outside 0-5"):
        load_stsbenchmark(folder)


def test_sick_missing_column(tmp_path: Path) -> None:
    folder = _write(tmp_path, "SICK_original_12col.txt", "pair_ID\tsentence_A\tsentence_B\n1\ta\tb\n")
    with pytest.raises(DataFormatError, match="line 1: the header lacks the column.*relatedness_score, SemEval_set"):
        load_sick(folder)


def test_sst2_bad_label_and_header(tmp_path: Path) -> None:
    folder = _write(tmp_path, "train.tsv", "sentence\tlabel\ngood film\t1\nbad film\tneg\n")
    _write(tmp_path, "test.tsv", "sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataFormatError, match=r"train.tsv, line 3: expected an integer for the label, found 'neg'"):
        load_sst2(folder)
    _write(tmp_path, "train.tsv", "text,label\n")
    with pytest.raises(DataFormatError, match="expected the header 'sentence<TAB>label'"):
        load_sst2(folder)


def test_mr_empty_line(tmp_path: Path) -> None:
    folder = _write(tmp_path, "rt-polarity.pos", "great .\n\nsuperb .\n")
    _write(tmp_path, "rt-polarity.neg", "awful .\n")
    with pytest.raises(DataFormatError, match=r"rt-polarity.pos, line 2: expected one sentence a line"):
        load_mr(folder)


def test_banking77_unknown_category(tmp_path: Path) -> None:
    folder = _write(tmp_path, "categories.json", '["card_arrival", "top_up"]')
    _write(tmp_path, "train.csv", "text,category\nwhere is my card,card_arrival\nadd money,top_up\n")
    _write(tmp_path, "test.csv", "text,category\nhello,greeting\n")
    with pytest.raises(DataFormatError, match=r"test.csv, line 2: category 'greeting' is not one of"):
        load_banking77_classification(folder)


def test_20newsgroups_corrupt_archive(tmp_path: Path) -> None:
    (tmp_path / "20news-bydate.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataFormatError, match="cannot read the gzip-compressed tar archive"):
        load_20newsgroups_classification(tmp_path)


def test_20newsgroups_latin1_fallback(tmp_path: Path) -> None:
    messages = {
        "20news-bydate-train/rec.autos/1": "Subject: Cars\n\nFast car".encode(),
        "20news-bydate-train/sci.space/2": "Subject: Space\n\nCaf\xe9 on Mars".encode("latin-1"),
        "20news-bydate-test/rec.autos/3": b"Subject: Wheels\n\nRound",
    }
    with tarfile.open(tmp_path / "20news-bydate.tar.gz", "w:gz") as archive:
        for name, payload in messages.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    data = load_20newsgroups_classification(tmp_path)
    assert data.train_texts == ["Cars\n\nFast car", "Space\n\nCafé on Mars"]
    assert data.train_labels == ["rec.autos", "sci.space"] and data.test_labels == ["rec.autos"]


def _cranfield_folder(tmp_path: Path, qrels: str) -> Path:
    documents = ".I 1\r\n.T\r\nwings .\r\n.W\r\nwings .\r\nlift\r\n.I 2\r\n.W\r\ndrag\r\n"
    folder = _write(tmp_path, "cran.all.1400", documents)
    _write(tmp_path, "cran.qry", ".I 001\r\n.W\r\nwhat about lift ?\r\n.I 004\r\n.W\r\ndrag ?\r\n")
    return _write(tmp_path, "cranqrel", qrels)


def test_cranfield_positions_and_gains_on_a_small_collection(tmp_path: Path) -> None:
    data = load_cranfield(_cranfield_folder(tmp_path, "1 1 1\r\n1 2 -1\r\n2 2 4\r\n"))
    assert data.queries == {"1": "what about lift ?", "2": "drag ?"}
    assert data.qrels == {"1": {"1": 4}, "2": {"2": 1}}
    assert data.corpus["1"] == "wings . lift"


def test_cranfield_bad_qrels(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"cranqrel, line 2: relevance code 7 is not one of"):
        load_cranfield(_cranfield_folder(tmp_path, "1 1 1\n2 2 7\n"))
    with pytest.raises(DataFormatError, match=r"cranqrel, line 1: query position 3 is outside 1..2"):
        load_cranfield(_cranfield_folder(tmp_path, "3 1 1\n"))
    with pytest.raises(DataFormatError, match=r"cranqrel, line 1: document 9 is not in cran.all.1400"):
        load_cranfield(_cranfield_folder(tmp_path, "1 9 1\n"))
    with pytest.raises(DataFormatError, match=r"cranqrel, line 1: expected 3 columns"):
        load_cranfield(_cranfield_folder(tmp_path, "1 1\n"))


def test_smart_text_before_first_record(tmp_path: Path) -> None:
    folder = _write(tmp_path, "CISI.ALL", "stray text\n.I 1\n.W\nbody\n")
    _write(tmp_path, "CISI.QRY", ".I 1\n.W\nquery\n")
    _write(tmp_path, "CISI.REL", "1 1 0 0.000000\n")
    with pytest.raises(DataFormatError, match=r"CISI.ALL, line 1: text outside any field"):
        load_cisi(folder)
    _write(tmp_path, "CISI.ALL", ".I 1\n.W\nbody\n.I 1\n.W\nagain\n")
    with pytest.raises(DataFormatError, match=r"CISI.ALL, line 4: record id 1 appears twice"):
        load_cisi(folder)


def test_lee_similarity_matrix_shape_is_checked(tmp_path: Path) -> None:
    _write(tmp_path, LEE_DOCUMENTS, "first document\nsecond document\n")
    _write(tmp_path, LEE_SIMILARITIES, "1\t0.5\n0\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected 2 tab-separated values, found 1"):
        load_lee_sts(tmp_path)


# --- dataclass validation and subsets -----------------------------------------------------------------


def test_sts_data_validation() -> None:
    with pytest.raises(ValueError, match="one score per sentence pair"):
        STSData(["a", "b"], ["c"], [1.0, 2.0], 0.0, 5.0)
    with pytest.raises(ValueError, match="empty"):
        STSData([], [], [], 0.0, 5.0)
    with pytest.raises(ValueError, match=r"scores\[1\] = 6.0 lies outside the declared scale \[0.0, 5.0\]"):
        STSData(["a", "b"], ["c", "d"], [1.0, 6.0], 0.0, 5.0)
    with pytest.raises(ValueError, match="finite"):
        STSData(["a"], ["c"], [float("nan")], 0.0, 5.0)


def test_classification_and_clustering_validation() -> None:
    with pytest.raises(ValueError, match="train split has 2 texts but 1 labels"):
        ClassificationData(["a", "b"], [0], ["c"], [1])
    with pytest.raises(ValueError, match="at least two classes"):
        ClassificationData(["a", "b"], [0, 0], ["c"], [1])
    with pytest.raises(ValueError, match="at least two clusters"):
        ClusteringData(["a", "b"], ["x", "x"])


def test_retrieval_data_validation() -> None:
    with pytest.raises(ValueError, match="document 'd9', which is not in the corpus"):
        RetrievalData({"d1": "x"}, {"q1": "y"}, {"q1": {"d9": 1}})
    with pytest.raises(ValueError, match="query 'q2', which is not in queries"):
        RetrievalData({"d1": "x"}, {"q1": "y"}, {"q2": {"d1": 1}})
    with pytest.raises(ValueError, match="int gain >= 0"):
        RetrievalData({"d1": "x"}, {"q1": "y"}, {"q1": {"d1": -1}})
    with pytest.raises(ValueError, match="no query with a relevant document"):
        RetrievalData({"d1": "x"}, {"q1": "y"}, {"q1": {"d1": 0}})


def test_subsets_are_deterministic_and_sized() -> None:
    sts = load_lee_sts()
    assert sts.subset(100).scores == sts.subset(100).scores
    assert sts.subset(100).scores != sts.subset(100, seed=1).scores
    assert len(sts.subset(100)) == 100 and len(sts.subset(5000)) == 1225
    with pytest.raises(ValueError, match="positive integer"):
        sts.subset(0)
    polarity = load_pang_lee_polarity().subset(20)
    assert Counter(polarity.train_labels) == Counter(polarity.test_labels) == {0: 10, 1: 10}


def test_retrieval_subset_keeps_judged_documents() -> None:
    cranfield_like = load_lee_retrieval()
    small = cranfield_like.subset(5, docs_per_query=4)
    assert len(small.queries) == 5
    judged = {doc for q in small.queries for doc in cranfield_like.qrels[q]}
    assert judged <= set(small.corpus)
    assert len(small.corpus) == max(len(judged), 20)
    assert small.ignore_identical_ids


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.sampled_from("abcde"), min_size=1, max_size=80),
    n=st.integers(1, 100),
    seed=st.integers(0, 5),
)
def test_stratified_indices_keep_label_proportions(labels: list[str], n: int, seed: int) -> None:
    chosen = stratified_indices(labels, n, seed)
    assert len(chosen) == min(n, len(labels)) == len(set(chosen))
    assert chosen == sorted(chosen) and all(0 <= i < len(labels) for i in chosen)
    counts, picked = Counter(labels), Counter(labels[i] for i in chosen)
    for label, count in counts.items():
        assert abs(picked[label] - count * len(chosen) / len(labels)) <= 1.0 + 1e-9
