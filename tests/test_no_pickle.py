"""Nothing st-pooling reads back is unpickled (issue 15): a pickle planted where st-pooling reads (search checkpoints,
feature caches, index arrays, saved models) is refused with a clear error and never runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

import st_pooling
from st_pooling.training.features import FeatureCache


class RunsCode:
    """Unpickling this creates ``marker``: proof that the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def planted_array(path: Path, marker: Path) -> None:
    np.save(path, np.array([RunsCode(marker)], dtype=object), allow_pickle=True)


def test_a_planted_feature_cache_is_refused(tmp_path):
    cache = FeatureCache("tokens", np.zeros((3, 4), dtype=np.float16), np.array([0, 1, 2, 3]),
                         {"a": 0, "b": 1, "c": 2}, {"dim": 4})
    folder = cache.save(tmp_path / "cache")
    marker = tmp_path / "code-ran"
    planted_array(folder / "values.npy", marker)
    with pytest.raises(ValueError, match=r"values\.npy is not a feature array st-pooling wrote"):
        FeatureCache.load(folder)
    assert not marker.exists()


def test_a_planted_pickle_in_a_saved_model_is_refused(tmp_path):
    folder = tmp_path / "model"
    st_pooling.build_model("minilm", "gem", max_seq_length=32).save(str(folder))
    pooling = next(p for p in folder.iterdir() if (p / "model.safetensors").is_file() and "GeM" in p.name)
    (pooling / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    with open(pooling / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"p": RunsCode(marker)}, handle)
    with pytest.raises(Exception):  # noqa: B017 -- whoever refuses it (torch's weights_only or sentence-transformers)
        SentenceTransformer(str(folder), device="cpu")
    assert not marker.exists()


def test_index_arrays_are_read_without_pickle():
    """Every .npy the index package reads (the migration of old indexes) is read with allow_pickle=False (source check,
    beside the index's own fault tests; its current format has no .npy: faiss files and SQLite)."""
    folder = Path(st_pooling.__file__).parent / "index"
    loads = [line for path in folder.glob("*.py") for line in path.read_text().splitlines() if "np.load(" in line]
    assert loads and all("allow_pickle=False" in line for line in loads)


def test_no_load_path_in_the_package_unpickles():
    """torch.load only with weights_only=True, np.load never with allow_pickle=True, no pickle.load(s) (gensim's data
    is read by one restricted Unpickler that maps its Bunch class to a dict and allows nothing else)."""
    package = Path(st_pooling.__file__).parent
    offending = []
    for path in package.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#")[0]
            if ("torch.load(" in code and "weights_only=True" not in code) or "allow_pickle=True" in code or \
                    "pickle.load(" in code or "pickle.loads(" in code:
                offending.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert not offending, offending
