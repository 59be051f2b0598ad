"""The benchmark's model: Llama-3.2-1B's shapes with random weights, quantized to Q4_K_M."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from gguf import LlamaFileType

from pinaivu_local.engine.host.quantize import quantize
from pinaivu_local.tiny_models.writer import LLAMA_3_2_1B_SHAPE, write_tiny_model

log = logging.getLogger(__name__)

BENCH_MODEL_FILE = "bench-llama3.2-1b-shape-Q4_K_M.gguf"
TINY_MODEL_FILE = "bench-tiny-F16.gguf"


def ensure_bench_model(directory: Path, *, tiny: bool = False) -> Path:
    """The benchmark model under `directory`, generated (once) if absent."""
    if tiny:
        path = directory / TINY_MODEL_FILE
        return path if path.exists() else write_tiny_model(path)
    path = directory / BENCH_MODEL_FILE
    if path.exists():
        return path
    f16 = directory / "bench-llama3.2-1b-shape-F16.gguf.tmp"
    try:
        log.info("writing the 1B-shaped F16 model (~2.5 GB, random weights) to %s", f16)
        write_tiny_model(f16, shape=LLAMA_3_2_1B_SHAPE, seed=1234)
        log.info("quantizing it to Q4_K_M (~800 MB)")
        quantize(f16, path, LlamaFileType.MOSTLY_Q4_K_M)
    finally:
        with contextlib.suppress(FileNotFoundError):
            f16.unlink()
    return path
