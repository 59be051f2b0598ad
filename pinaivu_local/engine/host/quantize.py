"""llama.cpp's own quantizer: a GGUF rewritten at another precision (Q4_K_M, Q8_0, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import llama_cpp.llama_cpp as llama

from pinaivu_local.errors import ModelFileError


def quantize(source: Path, target: Path, ftype: gguf.LlamaFileType) -> None:
    """Quantize `source` to `ftype`, written atomically to `target`; ModelFileError when llama.cpp refuses."""
    params = llama.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    # A crash or a refusal leaves no half-written file under the target's name.
    partial = target.with_name(f".{target.name}.partial")
    rc = llama.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
    if rc != 0:
        partial.unlink(missing_ok=True)
        raise ModelFileError(f"{source}: llama.cpp could not quantize it (status {rc})")
    os.replace(partial, target)
