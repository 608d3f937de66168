"""``import st_pooling`` is light, and makes saved st-pooling models loadable by plain ``SentenceTransformer(path)``
whichever of the two packages is imported first. Real fresh processes, the packaged MiniLM."""

from __future__ import annotations

import subprocess
import sys

import pytest

import st_pooling

HEAVY = ("torch", "sentence_transformers", "transformers", "mteb", "faiss")


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def test_the_command_line_starts_without_heavy_imports():
    code = ("import sys, st_pooling, st_pooling.cli, st_pooling.index, st_pooling.sweep, st_pooling.training; "
            f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))")
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def saved_gem(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("saved") / "gem"
    st_pooling.build_model("minilm", "gem", native="mean", device="cpu").save(str(folder))
    return str(folder)


@pytest.mark.parametrize("order", [
    "import st_pooling\nfrom sentence_transformers import SentenceTransformer",
    "from sentence_transformers import SentenceTransformer\nimport st_pooling",
])
def test_saved_models_load_whichever_package_comes_first(saved_gem, order):
    result = run(f"{order}\nmodel = SentenceTransformer({saved_gem!r}, device='cpu')\nprint(type(model[1]).__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "GeMPooling"


def test_without_the_import_sentence_transformers_keeps_its_gate_closed(saved_gem):
    result = run(f"from sentence_transformers import SentenceTransformer\nSentenceTransformer({saved_gem!r})")
    assert result.returncode != 0 and "trust_remote_code" in result.stderr


def test_public_names_resolve_and_unknown_ones_fail():
    assert st_pooling.build_model.__module__ == "st_pooling.models"
    assert "GeMPooling" in dir(st_pooling) and "GeMPooling" in st_pooling.__all__
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        st_pooling.nothing_here  # noqa: B018


def test_the_listing_equals_the_registry_and_the_task_list_and_imports_nothing_heavy():
    from st_pooling import POOLINGS, catalogue
    from st_pooling.evaluation.tasks import EMBEDDED_DEFAULT_TASKS, LOCAL_TASKS

    assert catalogue.POOLINGS == tuple(
        (name, cls.__name__, cls.learnable, cls.base_needs_for({}).hidden_states) for name, cls in POOLINGS.items())
    assert catalogue.LOCAL_TASKS == tuple(
        (name, task.metadata.type, name in EMBEDDED_DEFAULT_TASKS) for name, task in LOCAL_TASKS.items())
    result = run("import sys\nfrom st_pooling.cli import main\nmain(['list'])\n"
                 f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert "  mltp               MultiLayerTrainablePooling (learnable, all layers)" in result.stdout
    assert "  * LeeSTS" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
