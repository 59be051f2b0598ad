"""A real server on the tiny models for the Responses API's tests, and the openai client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.helpers import TEST_KEY, RunningServer, TinyModels, start_tool_server


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """Both ids on the tiny models, with room for tools (start_tool_server)."""
    workdir = tmp_path_factory.mktemp("responses-server")
    running = start_tool_server(workdir, tiny_models)
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    """The openai SDK with the admin key, retries off (a test sees each answer as it is)."""
    return openai.OpenAI(api_key=TEST_KEY, base_url=server.v1, max_retries=0)
