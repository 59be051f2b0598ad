"""Child process of engine/host/repack.py: decode with repacked weights; crashing here is the answer."""

from __future__ import annotations

import sys
from pathlib import Path

import llama_cpp.llama_cpp as llama
from gguf import LlamaFileType

from pinaivu_local.engine.host.quantize import quantize
from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions
from pinaivu_local.errors import ModelFileError
from pinaivu_local.tiny_models.writer import TinyShape, write_tiny_model


def main(workdir: Path) -> int:
    """Quantize a small model to Q4_K_M, load it with repacking on and decode a few tokens."""
    # Held in a variable until main returns: ctypes frees the trampoline with its Python object, and
    # llama.cpp calling freed memory crashed the probe itself (read as "repacking is unsafe").
    silence = llama.llama_log_callback(lambda *_: None)
    llama.llama_log_set(silence, None)
    llama.llama_backend_init()
    f16 = write_tiny_model(workdir / "probe-f16.gguf", shape=TinyShape(n_embd=256, n_ff=512, n_layer=1))
    quantized = workdir / "probe-q4_k_m.gguf"
    try:
        quantize(f16, quantized, LlamaFileType.MOSTLY_Q4_K_M)
    except ModelFileError:
        return 3
    for path in (quantized, write_tiny_model(workdir / "probe-q8.gguf", quant="Q8_0")):
        model = LlamaModel(path, LoadOptions(n_gpu_layers=0, weight_repack=True))
        ctx_params = llama.llama_context_default_params()
        ctx_params.n_ctx = 64
        ctx = llama.llama_init_from_model(model.ptr, ctx_params)
        tokens = model.tokenize("probe the repacked weights", add_bos=True)
        array = (llama.llama_token * len(tokens))(*tokens)
        if llama.llama_decode(ctx, llama.llama_batch_get_one(array, len(tokens))) != 0:
            return 4
        llama.llama_free(ctx)
        model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
