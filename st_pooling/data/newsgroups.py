"""20 Newsgroups read straight from ``20news-bydate.tar.gz``, and the message clean-up shared with the
embedded mini 20 Newsgroups set."""

from __future__ import annotations

import tarfile
from pathlib import Path

from st_pooling.data.errors import DataFormatError, require_files
from st_pooling.data.text_files import decode_bytes
from st_pooling.data.types import ClassificationData, ClusteringData

NEWSGROUPS_ARCHIVE = "20news-bydate.tar.gz"
SPLIT_FOLDERS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}


def split_news_message(message: str) -> tuple[str, str]:
    """(subject, body) of a Usenet message: the header block ends at the first empty line.

    Every header except ``Subject:`` is dropped: ``Newsgroups:``, ``Path:``, ``From:`` and
    ``Organization:`` name or strongly hint at the group, which would leak the label.
    """
    header, _, body = message.replace("\r\n", "\n").partition("\n\n")
    subject = ""
    for line in header.split("\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "subject":
            subject = value.strip()
            break
    return subject, body.strip()


def news_text(message: str, subject_only: bool = False) -> str:
    """The text st-pooling embeds for a news message: ``subject`` alone, or ``subject`` + blank line + body."""
    subject, body = split_news_message(message)
    if subject_only:
        return subject
    return f"{subject}\n\n{body}" if subject else body


def _read_split(archive_path: Path, split: str, subject_only: bool) -> tuple[list[str], list[str]]:
    prefix = SPLIT_FOLDERS[split] + "/"
    texts: list[str] = []
    labels: list[str] = []
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            for member in archive:
                if not member.isfile() or not member.name.startswith(prefix):
                    continue
                parts = member.name[len(prefix):].split("/")
                if len(parts) != 2:
                    raise DataFormatError(
                        archive_path, f"expected {prefix}<group>/<message id>, found the member {member.name!r}"
                    )
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                texts.append(news_text(decode_bytes(handle.read()), subject_only))
                labels.append(parts[0])
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataFormatError(archive_path, f"cannot read the gzip-compressed tar archive ({error})") from None
    if not texts:
        raise DataFormatError(archive_path, f"the archive holds no messages under {prefix}")
    return texts, labels


def load_20newsgroups_classification(path: str | Path, subject_only: bool = False) -> ClassificationData:
    """20 Newsgroups topic classification (the 20 group names as labels), by-date train/test split.

    Read from ``20news-bydate.tar.gz`` without unpacking it; messages are decoded as UTF-8 with a
    latin-1 fallback. Each text is the subject and the body (other headers dropped, see
    :func:`split_news_message`), or the subject alone with ``subject_only=True``.
    """
    folder = require_files(path, [NEWSGROUPS_ARCHIVE], "20 Newsgroups")
    train_texts, train_labels = _read_split(folder / NEWSGROUPS_ARCHIVE, "train", subject_only)
    test_texts, test_labels = _read_split(folder / NEWSGROUPS_ARCHIVE, "test", subject_only)
    return ClassificationData(train_texts, train_labels, test_texts, test_labels)


def load_20newsgroups_clustering(
    path: str | Path, subject_only: bool = False, split: str = "test"
) -> ClusteringData:
    """20 Newsgroups as clustering: the messages of one split (default the 7,532 test messages),
    their group as the gold cluster. Texts as in :func:`load_20newsgroups_classification`."""
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"20 Newsgroups has no split {split!r}; choose one of {sorted(SPLIT_FOLDERS)}")
    folder = require_files(path, [NEWSGROUPS_ARCHIVE], "20 Newsgroups")
    texts, labels = _read_split(folder / NEWSGROUPS_ARCHIVE, split, subject_only)
    return ClusteringData(texts, labels)
