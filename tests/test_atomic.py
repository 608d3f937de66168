"""replace_folder: the new folder appears whole, the old one survives a failed replacement."""

from __future__ import annotations

import pytest

from st_pooling.atomic import replace_folder


def test_replace_folder_swaps_in_the_new_folder_and_removes_the_old(tmp_path):
    destination, staged = tmp_path / "model", tmp_path / ".model.partial"
    destination.mkdir()
    (destination / "old.txt").write_text("old")
    staged.mkdir()
    (staged / "new.txt").write_text("new")
    assert replace_folder(staged, destination) == destination
    assert sorted(p.name for p in destination.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing left aside


def test_a_failed_replacement_keeps_the_old_folder(tmp_path):
    destination = tmp_path / "model"
    destination.mkdir()
    (destination / "weights").write_text("precious")
    with pytest.raises(FileNotFoundError):
        replace_folder(tmp_path / "never-written", destination)
    assert (destination / "weights").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
