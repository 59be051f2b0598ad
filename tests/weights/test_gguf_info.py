"""The GGUF header reader: facts of the tiny models, truncation, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinaivu_local.errors import ModelFileError
from pinaivu_local.tiny_models.writer import TinyShape
from pinaivu_local.weights.gguf_info import check_gguf, kv_cache_bytes, read_gguf_info
from tests.helpers import TinyModels


@pytest.mark.parametrize(("attr", "quant"), [("f16", "F16"), ("q8", "Q8_0"), ("q4", "Q4_0")])
def test_tiny_models(tiny_models: TinyModels, attr: str, quant: str) -> None:
    path: Path = getattr(tiny_models, attr)
    info = read_gguf_info(path)
    shape = TinyShape()
    assert info.architecture == "llama" and info.quantization == quant
    assert (info.n_embd, info.n_head, info.n_head_kv) == (shape.n_embd, shape.n_head, shape.n_head_kv)
    assert info.context_length == shape.n_ctx_train
    assert info.expected_bytes == info.file_bytes == path.stat().st_size and not info.truncated
    head_dim = shape.n_embd // shape.n_head
    assert info.kv_cache_bytes(512) == 512 * info.n_layer * shape.n_head_kv * 2 * head_dim * 2  # type: ignore[operator]


def test_llama_3_2_1b_kv_cache() -> None:
    # 16 layers, 8 KV heads of 64: 256 MiB of F16 cache at 8192 tokens.
    assert kv_cache_bytes(8192, 16, 8, 64, 64) == 256 * 2**20


def test_truncated_and_foreign_files(tmp_path: Path, tiny_models: TinyModels) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_models.f16.read_bytes()[:-10])
    assert read_gguf_info(cut).truncated
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(tiny_models.f16.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="damaged GGUF header"):
        read_gguf_info(header_only)
    html = tmp_path / "page.gguf"
    html.write_text("<html>")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        read_gguf_info(html)
    with pytest.raises(ModelFileError, match="not found"):
        read_gguf_info(tmp_path / "none.gguf")


def test_check_gguf_reads_the_magic_only(tmp_path: Path, tiny_models: TinyModels) -> None:
    head = tmp_path / "head.gguf"
    head.write_bytes(tiny_models.f16.read_bytes()[:4])
    check_gguf(head)  # a header cut short is llama.cpp's to refuse
    html = tmp_path / "page.gguf"
    html.write_text("<html>")
    with pytest.raises(ModelFileError, match=r"not a GGUF file \(it starts with b'<htm', expected b'GGUF'\)"):
        check_gguf(html)
    with pytest.raises(ModelFileError, match="model file not found"):
        check_gguf(tmp_path / "none.gguf")
    with pytest.raises(ModelFileError, match="cannot read the model file"):
        check_gguf(tmp_path)
