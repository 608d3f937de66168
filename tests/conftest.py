"""Shared fixtures: offline mode, the packaged MiniLM, and the location of ../shared/data."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SAMPLE_TEXTS = [
    "A man is playing a guitar on the stage.",
    "The central bank raised interest rates again this quarter.",
    "Cats sleep for most of the day.",
    "Quantum computers use qubits, which can be in superposition.",
    "short",
    "The committee postponed the vote on the new budget until next week because several members were absent.",
]


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from st_pooling.models import packaged_minilm_path

    return packaged_minilm_path()


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    return list(SAMPLE_TEXTS)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared benchmark data (../shared/data or $ST_POOLING_DATA_DIR); tests that need it skip without it."""
    from st_pooling.data import shared_data_dir

    folder = shared_data_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("the shared benchmark data is not available: set ST_POOLING_DATA_DIR to the folder holding "
                    "stsbenchmark/, sick/, cranfield/, ...")
    return folder
