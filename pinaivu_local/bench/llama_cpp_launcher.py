"""Run `llama_cpp.server` with llama.cpp's weight repacking set explicitly.

    python -m pinaivu_local.bench.llama_cpp_launcher --weight-repack off -- <llama_cpp.server args>

llama_cpp.server loads models through the high-level `Llama` class, which cannot set
`use_extra_bufts`; on Xeons with AMX a quantized model then crashes the first llama_decode.
`Llama` asks `llama_cpp.llama_cpp.llama_model_default_params()` for its defaults at load time,
so replacing that function in this process decides repacking for every model the server loads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def force_weight_repack(module: Any, enabled: bool) -> Callable[[], Any]:
    """Make `module.llama_model_default_params` return params with use_extra_bufts = `enabled`."""
    original = module.llama_model_default_params

    def default_params() -> Any:
        params = original()
        params.use_extra_bufts = enabled
        return params

    module.llama_model_default_params = default_params
    return original


def main(argv: list[str]) -> None:
    """Parse `--weight-repack on|off --`, patch llama.cpp's defaults, hand the rest to llama_cpp.server."""
    if len(argv) < 3 or argv[0] != "--weight-repack" or argv[1] not in ("on", "off") or argv[2] != "--":
        sys.exit("usage: python -m pinaivu_local.bench.llama_cpp_launcher --weight-repack on|off -- SERVER_ARGS...")
    import llama_cpp.llama_cpp as llama
    from llama_cpp.server.__main__ import main as server_main

    force_weight_repack(llama, argv[1] == "on")
    sys.argv = ["llama_cpp.server", *argv[3:]]
    server_main()


if __name__ == "__main__":
    main(sys.argv[1:])
