"""llama.cpp's quantizer on a generated model; a refusal leaves no file behind."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from pinaivu_local.engine.host.quantize import quantize
from pinaivu_local.errors import ModelFileError
from pinaivu_local.tiny_models.writer import TinyShape, write_tiny_model


def test_quantize_to_q4_k_m(tmp_path: Path) -> None:
    # Q4_K works on rows of 256 values: the smallest shape that quantizes as the 1B model does.
    shape = TinyShape(n_embd=256, n_layer=1, n_head=4, n_head_kv=2, n_ff=512, n_vocab=1024)
    source = write_tiny_model(tmp_path / "f16.gguf", shape=shape)
    target = tmp_path / "q4km.gguf"
    quantize(source, target, gguf.LlamaFileType.MOSTLY_Q4_K_M)
    kinds = {t.tensor_type.name for t in gguf.GGUFReader(target).tensors}
    assert "Q4_K" in kinds
    assert not list(tmp_path.glob(".*partial"))


def test_a_refusal_is_a_model_file_error(tmp_path: Path) -> None:
    source = tmp_path / "page.gguf"
    source.write_text("<html>")
    target = tmp_path / "q8.gguf"
    with pytest.raises(ModelFileError, match="could not quantize"):
        quantize(source, target, gguf.LlamaFileType.MOSTLY_Q8_0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.gguf"]
