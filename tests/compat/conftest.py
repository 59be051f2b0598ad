"""The compatibility suite's server: `serve --test-models` on the shipped catalog, as a new user starts it.

Every library here talks to it over 127.0.0.1 and nothing else: keys and base URLs are set explicitly,
and each library's telemetry or tracing is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TEST_KEY, RunningServer, start_server

CATALOG = Path(__file__).parents[2] / "models.toml"
MODEL = "llama3.2:1b"
# Structured cases run several times: one lucky pass proves little.
TRIES = 5
# A test model's free text runs until it happens to end: every text answer gets a budget.
TEXT_TOKENS = 32
# Enough for a call (the tiny vocabulary spends about a token per byte), and a text answer after it.
LOOP_TOKENS = 160


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("compat"), "--test-models", "--models-file", str(CATALOG))
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def offline_env(server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What a user's environment says to point a library at the server, and every library's telemetry off."""
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.v1)
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
        monkeypatch.setenv(name, "false")
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    monkeypatch.setenv("LOGFIRE_IGNORE_NO_CONFIG", "1")
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
