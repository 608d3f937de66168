"""Convert an index saved by st-pooling before the segment format (format 1: documents.jsonl + its offsets, one
``IDMap2`` faiss file) into the current one, in place and atomically (a new version folder)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from st_pooling.index.build import BuildReport
from st_pooling.index.corpus import Document
from st_pooling.index.documents import DOCUMENTS_DB, DocumentTable
from st_pooling.index.errors import DamagedIndexError, IndexStoreError
from st_pooling.index.metadata import FORMAT_VERSION
from st_pooling.index.segments import TRAINED_FILE, segment_name, write_index_file
from st_pooling.index.spec import IndexSpec
from st_pooling.index.store import LEGACY_DOCUMENTS_FILE, METADATA_FILE, IndexFolder, write_metadata

_BATCH = 10_000


def migrate_index(path: str | Path, *, wait: bool = True) -> BuildReport:
    """Rewrite the format-1 index at ``path`` as a format-2 index (same documents, vectors and search results).
    Documents of format 1 were embedded with ``model.encode`` (no prompts), which the new metadata records."""
    folder = IndexFolder(path)
    version = folder.require_current()
    with folder.write_lock(wait, command=f"st-pooling index migrate {folder.root}"):
        version = folder.require_current()
        try:
            metadata = json.loads((version / METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DamagedIndexError(folder.root, version / METADATA_FILE, f"cannot be read ({error})") from None
        if metadata.get("format_version") != 1 or not (version / LEGACY_DOCUMENTS_FILE).is_file():
            raise IndexStoreError(f"{folder.root} is not an index of the old format (documents.jsonl); nothing to "
                                  "migrate")
        try:
            loaded = faiss.read_index(str(version / "index.faiss"))
            id_map: Any = faiss.downcast_index(loaded)  # Any: faiss types every downcast as the base Index  # "loaded" owns the index: keep it alive while id_map is used
            offsets = np.load(version / "document_offsets.npy", allow_pickle=False)
        except (RuntimeError, OSError, ValueError):
            raise DamagedIndexError(folder.root, version / "index.faiss", "or its row files cannot be read; rebuild "
                                    "the index", metadata.get("model", {}).get("name")) from None
        inner = faiss.downcast_index(id_map.index)  # positions are rows: format 1 added both in the same order
        spec = IndexSpec(metadata["index"]["type"], metadata["index"]["params"], metadata["index"].get("chosen_by", ""))
        staging = folder.stage()
        try:
            table = DocumentTable(staging / DOCUMENTS_DB, 0, new=True)
            with (version / LEGACY_DOCUMENTS_FILE).open("rb") as handle:
                batch = []
                for line in handle:
                    row = json.loads(line)
                    batch.append(Document(id=row["id"], text=row["text"], title=row.get("title", "")))
                    if len(batch) == _BATCH:
                        table.append(batch)
                        batch = []
                table.append(batch)
            table.commit()
            if table.count != len(offsets) - 1 or table.count != inner.ntotal:
                raise IndexStoreError(f"{version} holds {table.count} documents and {inner.ntotal} vectors; they must "
                                      "agree to migrate; rebuild the index")
            write_index_file(inner, staging / segment_name(1))
            new = {**metadata, "format_version": FORMAT_VERSION, "prompts": {"document": "", "query": ""},
                   "count": table.count, "segments": [{"file": segment_name(1), "rows": table.count}]}
            new["model"] = {**metadata["model"], "max_seq_length": None}
            new["index"] = {**metadata["index"], "factory": spec.factory_string}
            if spec.needs_training:
                empty = faiss.clone_index(inner)
                empty.reset()
                trained = faiss.serialize_index(empty).tobytes()
                (staging / TRAINED_FILE).write_bytes(trained)
                new["quantizer"] = {"sha256": hashlib.sha256(trained).hexdigest(),
                                    "training": {"method": "first vectors of the stream (format 1)"}}
            write_metadata(staging, new)
            folder.commit(staging)
        except BaseException:
            folder.discard(staging)
            raise
    return BuildReport(folder.root, 0, table.count, spec, 0.0, 0.0)
