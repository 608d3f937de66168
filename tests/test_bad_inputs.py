"""A matrix of bad inputs per command (issue 15): each is refused with exit code 2 and a message that names the culprit
(the option, file or value), and every file that existed before is unchanged afterwards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from st_pooling.cli import main


@dataclass(frozen=True)
class Case:
    argv: list[str]  # "{tmp}" is replaced by the case's folder
    culprit: list[str]  # each must appear in the error message ("{tmp}" replaced too)
    files: dict[str, str] = field(default_factory=dict)  # files to create first, relative to the case's folder


USER_FILES = {"out/report.md": "my notes", "out/summary.json": "{}", "out/results.md": "my table"}
PAIRS = "".join(json.dumps({"anchor": f"q {i}", "positive": f"a {i}"}) + "\n" for i in range(8))

CASES = {
    # compare
    "compare: a Hub name, offline": Case(["compare", "--base", "some-org/not-a-model", "--poolings", "mean",
                                           "--output", "{tmp}/out"], ["'some-org/not-a-model'", "minilm"]),
    "compare: unknown pooling": Case(["compare", "--poolings", "mean", "avg", "--output", "{tmp}/out"],
                                     ["unknown pooling 'avg'"]),
    "compare: boolean option misread": Case(["compare", "--poolings", "mean:exclude_first_token=off",
                                             "--output", "{tmp}/out"], ["exclude_first_token='off'"]),
    "compare: zero latents": Case(["compare", "--poolings", "latent_attention:num_latents=0", "--output", "{tmp}/out"],
                                  ["num_latents='0'"]),
    "compare: empty layer list": Case(["compare", "--poolings", "mltp:layers=", "--output", "{tmp}/out"],
                                      ["layers=''", "empty"]),
    "compare: unknown option": Case(["compare", "--poolings", "gem:foo=1", "--output", "{tmp}/out"],
                                    ["foo", "valid options"]),
    "compare: unknown task": Case(["compare", "--tasks", "NoSuchTaskAnywhere", "--output", "{tmp}/out"],
                                  ["NoSuchTaskAnywhere"]),
    "compare: too few resamples": Case(["compare", "--n-resamples", "20", "--output", "{tmp}/out"],
                                       ["n_resamples=20"]),
    "compare: a user's folder": Case(["compare", "--poolings", "mean", "--output", "{tmp}/out"],
                                     ["{tmp}/out", "did not write it"], USER_FILES),
    # train
    "train: missing data file": Case(["train", "--pooling", "gem", "--train", "{tmp}/nope.jsonl", "--output",
                                      "{tmp}/model"], ["{tmp}/nope.jsonl"]),
    "train: broken data line": Case(["train", "--pooling", "gem", "--train", "{tmp}/pairs.jsonl", "--output",
                                     "{tmp}/model"], ["{tmp}/pairs.jsonl", "line 9"],
                                    {"pairs.jsonl": PAIRS + "{ not json\n"}),
    "train: invalid UTF-8": Case(["train", "--pooling", "gem", "--train", "{tmp}/bad.jsonl", "--output",
                                  "{tmp}/model"], ["{tmp}/bad.jsonl, line 2", "not valid utf-8"],
                                 {"bad.jsonl": PAIRS.splitlines(keepends=True)[0]}),
    "train: unknown option": Case(["train", "--pooling", "gem:foo=1", "--train", "{tmp}/pairs.jsonl", "--output",
                                   "{tmp}/model"], ["foo", "valid options"], {"pairs.jsonl": PAIRS}),
    "train: a user's folder": Case(["train", "--pooling", "gem", "--train", "{tmp}/pairs.jsonl", "--fast-path",
                                    "--output", "{tmp}/out"], ["{tmp}/out", "not empty"],
                                   {"pairs.jsonl": PAIRS, **USER_FILES}),
    # search
    "sweep: a user's folder": Case(["sweep", "--poolings", "gem", "--lrs", "1e-3", "--output", "{tmp}/out",
                                     "--quiet"], ["{tmp}/out", "did not write it"], USER_FILES),
    "sweep: missing space file": Case(["sweep", "--space", "{tmp}/space.yaml", "--output", "{tmp}/s", "--quiet"],
                                       ["{tmp}/space.yaml"]),
    "sweep: bad option in the space": Case(["sweep", "--poolings", "gem:initial_p=abc", "--lrs", "1e-3",
                                             "--output", "{tmp}/s", "--quiet"], ["initial_p='abc'"]),
    # export
    "export: not a Hub id": Case(["export", "--model", "{tmp}/model", "--results", "{tmp}/results", "--name",
                                  "../..", "--output", "{tmp}/export"], ["'../..'", "Hub id"]),
    "export: not a model folder": Case(["export", "--model", "{tmp}/nothing", "--results", "{tmp}/results",
                                        "--name", "org/model", "--output", "{tmp}/export"], ["{tmp}/nothing"]),
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_naming_the_culprit_and_nothing_changes(name, tmp_path, capsys):
    case = CASES[name]
    for relative, text in case.files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text, encoding="utf-8")
        if relative.startswith("bad"):
            with (tmp_path / relative).open("ab") as handle:
                handle.write(b'{"anchor": "caf\xe9", "positive": "b"}\n')  # latin-1 bytes in a utf-8 file
    before = snapshot(tmp_path)
    code = main([part.replace("{tmp}", str(tmp_path)) for part in case.argv] + ["--no-progress"] *
                (case.argv[0] in ("compare", "train")))
    message = capsys.readouterr().err
    assert code == 2, message
    for culprit in case.culprit:
        assert culprit.replace("{tmp}", str(tmp_path)) in message, message
    assert "Traceback" not in message
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "a pre-existing file changed"


def test_unreachable_hub_name_is_one_line(tmp_path, capsys):
    """A Hub name with the Hub unreachable (HF_HUB_OFFLINE=1, set by conftest): one line naming the model and what to do."""
    code = main(["compare", "--base", "some-org/not-a-model", "--poolings", "mean", "--output", str(tmp_path / "out"),
                 "--no-progress"])
    message = capsys.readouterr().err
    assert code == 2, message
    assert message.count("\n") == 1 and message.startswith("st-pooling compare: error: "), message
    assert "'some-org/not-a-model'" in message and "Hub" in message and "minilm" in message, message
