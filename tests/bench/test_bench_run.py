"""`pinaivu-local bench --tiny`: the whole machinery end to end on the tiny model, in seconds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pinaivu_local.bench.load import requests_per_stream
from pinaivu_local.cli import main
from pinaivu_local.engine.host.devices import supports_gpu_offload

PEER_INSTALLED = all(importlib.util.find_spec(m) for m in ("fastapi", "sse_starlette", "starlette_context"))


def test_bench_tiny_end_to_end(tmp_path: Path) -> None:
    """Every scenario, the shared-prompt one included, on the tiny model; tables, summary and JSON."""
    args = ["bench", "--tiny", "--work-dir", str(tmp_path), "--concurrency", "1,2", "--rounds", "2", "--threads", "1"]
    args += ["--max-tokens", "6", "--prompt-tokens", "12", "--parallel", "2", "--weight-repack", "off"]
    result = CliRunner().invoke(main, [*args, "--peer" if PEER_INSTALLED else "--no-peer"])
    assert result.exit_code == 0, result.output
    assert "### summary: the best of 2 round(s)" in result.output
    assert "| 8 chats sharing a 1,000-token system prompt, 1B-shaped Q4_K_M, 2 streams, 6 tokens |" in result.output
    data = json.loads((tmp_path / "bench-results.json").read_text())
    assert [s["name"] for s in data["scenarios"]] == ["1b", "tiny-f16", "shared-prompt", "shared-prompt-tiny"]
    assert data["weight_repack"] is False and data["threads"] == 1
    assert data["gpu_layers"] == 0 and data["gpus"] == []
    assert "every layer on the CPU" in result.output
    for scenario in data["scenarios"]:
        names = [server["name"] for server in scenario["servers"]]
        assert names == (["pinaivu-local", "llama_cpp.server"] if PEER_INSTALLED else ["pinaivu-local"])
        for server in scenario["servers"]:
            assert server["prompt_tokens"] >= 12
            assert server["rss_loaded_bytes"] > 0
            assert [level["concurrency"] for level in server["levels"]] == [1, 2]
            for level in server["levels"]:
                # every round sends at least REQUESTS_PER_ROUND requests: one stream sends several
                assert level["tokens"] == 6 * level["concurrency"] * requests_per_stream(level["concurrency"]) * 2
                assert 0 < level["tokens_per_s"] <= level["best_round_tokens_per_s"]
                assert level["best_round_ttft_p50_s"] <= level["ttft_p95_s"]
    shared = data["scenarios"][2]
    assert shared["shared_prefix_tokens"] == 200
    assert shared["servers"][0]["prompt_tokens"] >= 200  # the system prompt reached the chat
    if PEER_INSTALLED:
        assert "vs llama_cpp.server: tok/s" in result.output


def test_bench_rejects_bad_concurrency(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "--tiny", "--work-dir", str(tmp_path), "--concurrency", "1,x"])
    assert result.exit_code == 2
    assert "stream counts" in result.output


def test_bench_gpu_layers_need_an_offloading_build(tmp_path: Path) -> None:
    """--gpu-layers on a CPU-only llama.cpp is refused before anything starts, saying how to get a GPU build."""
    result = CliRunner().invoke(main, ["bench", "--tiny", "--work-dir", str(tmp_path), "--gpu-layers", "all"])
    if supports_gpu_offload():
        pytest.skip("this llama.cpp offloads to a GPU: nothing to refuse")
    assert result.exit_code == 1
    assert "GPU=cuda" in result.output and "--gpu-layers" in result.output
    assert not list(tmp_path.iterdir())  # refused before any model or log was written


def test_bench_rejects_bad_gpu_layers(tmp_path: Path) -> None:
    for value in ("most", "-1"):
        result = CliRunner().invoke(main, ["bench", "--tiny", "--work-dir", str(tmp_path), "--gpu-layers", value])
        assert result.exit_code == 2
        assert "'all'" in result.output
