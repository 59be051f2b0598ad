"""How the servers under test are set up: the same model, context, slots and GPU layers for each."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pinaivu_local.bench.servers import ServerSetup, llama_server_command, our_catalog
from pinaivu_local.catalog import load_catalog


def _setup(gpu_layers: int) -> ServerSetup:
    return ServerSetup(
        model=Path("/models/bench.gguf"),
        model_id="bench",
        n_ctx=2816,
        parallel=32,
        threads=4,
        weight_repack=False,
        gpu_layers=gpu_layers,
    )


def _value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_llama_server_offloads_what_ours_offloads() -> None:
    """--gpu-layers all reaches llama-server as 'all' (its own spelling; -1 there means 'auto')."""
    cmd = llama_server_command(Path("/bin/llama-server"), _setup(-1), 8123)
    assert _value(cmd, "--n-gpu-layers") == "all"
    assert _value(cmd, "--parallel") == "32" and _value(cmd, "--ctx-size") == "2816"
    assert _value(cmd, "--port") == "8123" and "--no-repack" in cmd
    assert _value(llama_server_command(Path("/bin/llama-server"), _setup(0), 1), "--n-gpu-layers") == "0"
    assert _value(llama_server_command(Path("/bin/llama-server"), _setup(12), 1), "--n-gpu-layers") == "12"


def test_our_catalog_is_a_valid_models_file_with_the_same_setup(tmp_path: Path) -> None:
    """The catalog our server gets parses as a models file, with the layers, context and slots given."""
    path = tmp_path / "bench-models.toml"
    path.write_text(our_catalog(_setup(-1)))
    entry = tomllib.loads(path.read_text())["models"]["bench"]
    assert entry == {"path": "/models/bench.gguf", "n_ctx": 2816, "n_gpu_layers": -1, "parallel": 32}
    (spec,) = load_catalog(path, tmp_path).models
    assert spec.id == "bench" and spec.n_gpu_layers == -1 and spec.parallel == 32 and spec.n_ctx == 2816
