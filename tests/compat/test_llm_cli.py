"""simonw's `llm`: the server as an OpenAI-compatible model of extra-openai-models.yaml, a prompt and --schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.compat.conftest import MODEL, TEXT_TOKENS, TRIES
from tests.helpers import TEST_KEY, RunningServer

LLM = Path(sys.executable).parent / "llm"


def llm(*args: str) -> str:
    done = subprocess.run([str(LLM), *args], capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    return done.stdout


def configure(server: RunningServer) -> None:
    """What `llm`'s documentation says: a model entry in extra-openai-models.yaml and its key in keys.json."""
    home = Path(os.environ["LLM_USER_PATH"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: pinaivu\n  model_name: {MODEL}\n  api_base: {server.v1}\n  api_key_name: pinaivu\n"
        "  supports_schema: true\n  supports_tools: true\n"
    )
    (home / "keys.json").write_text(json.dumps({"pinaivu": TEST_KEY}))


def test_a_prompt_and_a_schema(server: RunningServer) -> None:
    configure(server)
    assert "pinaivu" in llm("models")
    llm("-m", "pinaivu", "--no-log", "-o", "max_tokens", str(TEXT_TOKENS), "Hello")
    for _ in range(TRIES):
        answer = json.loads(llm("-m", "pinaivu", "--no-log", "--schema", "name, age int", "A person"))
        assert isinstance(answer["name"], str) and isinstance(answer["age"], int)
