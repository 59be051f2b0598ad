"""A real server on the tiny models for the Responses API's tests, and the openai client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.helpers import TEST_KEY, RunningServer, TinyModels, start_server, write_catalog


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """Contexts of 4096 tokens: the tiny vocabulary spends about a token per byte of the tools' JSON."""
    workdir = tmp_path_factory.mktemp("responses-server")
    catalog = write_catalog(
        workdir / "models.toml",
        {
            "llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 4096, "parallel": 2},
            "llama3.2:3b": {"path": str(tiny_models.q8), "n_ctx": 4096, "parallel": 2},
        },
    )
    running = start_server(workdir, "--models-file", str(catalog))
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    """The openai SDK with the admin key, retries off (a test sees each answer as it is)."""
    return openai.OpenAI(api_key=TEST_KEY, base_url=server.v1, max_retries=0)
