"""The openai Node SDK (tests/compat/node, installed by `make node`): a chat, a stream and a forced tool call."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.compat.conftest import MODEL, TEXT_TOKENS

NODE_DIR = Path(__file__).parent / "node"


def test_chat_stream_and_a_forced_call() -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "openai").is_dir():
        if os.environ.get("PINAIVU_REQUIRE_NODE"):
            pytest.fail("no node or no tests/compat/node/node_modules: run `make node`")
        pytest.skip("no node or no tests/compat/node/node_modules: run `make node`")
    done = subprocess.run(
        [node, "client.mjs"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PINAIVU_MODEL": MODEL},
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["chat"]["finish"] in ("stop", "length") and out["chat"]["usage"]["completion_tokens"] <= TEXT_TOKENS
    assert out["stream"]["finish"] in ("stop", "length") and out["stream"]["usage"]["completion_tokens"] <= TEXT_TOKENS
    assert out["call"]["finish"] == "tool_calls"
    (call,) = out["call"]["calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["unit"] in ("celsius", "fahrenheit")
