"""`pinaivu-local bench --tiny`: the whole machinery end to end on the tiny model, in seconds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from click.testing import CliRunner

from pinaivu_local.cli import main

PEER_INSTALLED = all(importlib.util.find_spec(m) for m in ("fastapi", "sse_starlette", "starlette_context"))


def test_bench_tiny_end_to_end(tmp_path: Path) -> None:
    args = ["bench", "--tiny", "--work-dir", str(tmp_path), "--concurrency", "1,2", "--rounds", "1"]
    args += ["--max-tokens", "6", "--prompt-tokens", "12", "--weight-repack", "off"]
    result = CliRunner().invoke(main, [*args, "--peer" if PEER_INSTALLED else "--no-peer"])
    assert result.exit_code == 0, result.output
    assert "| 2 |" in result.output
    data = json.loads((tmp_path / "bench-results.json").read_text())
    names = [server["name"] for server in data["servers"]]
    assert names == (["pinaivu-local", "llama_cpp.server"] if PEER_INSTALLED else ["pinaivu-local"])
    for server in data["servers"]:
        assert server["prompt_tokens"] >= 12
        assert server["rss_loaded_bytes"] > 0
        assert [level["concurrency"] for level in server["levels"]] == [1, 2]
        for level in server["levels"]:
            assert level["tokens"] == 6 * level["concurrency"]
            assert level["tokens_per_s"] > 0
    assert data["weight_repack"] is False
    if PEER_INSTALLED:
        assert "tok/s ratio" in result.output


def test_bench_rejects_bad_concurrency(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "--tiny", "--work-dir", str(tmp_path), "--concurrency", "1,x"])
    assert result.exit_code == 2
    assert "stream counts" in result.output
