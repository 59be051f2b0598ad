"""The benchmark model: cached, and llama.cpp's quantizer on a generated model."""

from __future__ import annotations

from pathlib import Path

import gguf

from pinaivu_local.bench.model import ensure_bench_model, quantize
from pinaivu_local.tiny_gguf import TinyShape, write_tiny_model


def test_tiny_bench_model_is_generated_once(tmp_path: Path) -> None:
    path = ensure_bench_model(tmp_path, tiny=True)
    mtime = path.stat().st_mtime_ns
    assert ensure_bench_model(tmp_path, tiny=True) == path
    assert path.stat().st_mtime_ns == mtime


def test_quantize_to_q4_k_m(tmp_path: Path) -> None:
    # Q4_K works on rows of 256 values: the smallest shape that quantizes as the 1B model does.
    shape = TinyShape(n_embd=256, n_layer=1, n_head=4, n_head_kv=2, n_ff=512, n_vocab=1024)
    source = write_tiny_model(tmp_path / "f16.gguf", shape=shape)
    target = tmp_path / "q4km.gguf"
    quantize(source, target, 15)
    kinds = {t.tensor_type.name for t in gguf.GGUFReader(target).tensors}
    assert "Q4_K" in kinds
    assert not list(tmp_path.glob(".*partial"))
