"""How often a stream's text goes out: the server's interval (20 ms), or what a request's header asks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pinaivu_local.wire import STREAM_INTERVAL_HEADER
from tests.helpers import AUTH, NO_EOG, RunningServer, TinyModels, start_server, write_catalog

BODY = {"model": "llama3.2:1b", "prompt": "pace me", "max_tokens": 64, "temperature": 0, "logit_bias": NO_EOG}


def stream_texts(server: RunningServer, headers: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
    """The texts of a completion stream's chunks (empty ones left out), and its last chunk."""
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST", f"{server.v1}/completions", json=body, headers={**AUTH, **headers}, timeout=60
    ) as response:
        assert response.status_code == 200, response.read()
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    return [c["choices"][0]["text"] for c in chunks if c["choices"] and c["choices"][0]["text"]], chunks[-1]


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """A server that holds a stream's text for a second (PINAIVU_STREAM_INTERVAL_MS), on the slower tiny
    model: its tokens come a few milliseconds apart, so a stream asked for every token comes in many chunks
    even on a busy machine, where an event loop that falls behind sends its waiting text as one chunk."""
    workdir = tmp_path_factory.mktemp("paced")
    catalog = write_catalog(workdir / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.slow), "n_ctx": 512}})
    running = start_server(workdir, "--models-file", str(catalog), env={"PINAIVU_STREAM_INTERVAL_MS": "1000"})
    yield running
    running.stop()


def test_a_request_may_ask_for_every_token_at_once(slow_server: RunningServer) -> None:
    """A gateway asks its nodes for a chunk per token (it counts a stream cut short by its chunks); the server's
    interval of a second joins the text into the first token's chunk and the rest; the text is the same."""
    every_token, last = stream_texts(slow_server, {STREAM_INTERVAL_HEADER: "0"})
    joined, _ = stream_texts(slow_server, {})
    assert last["usage"]["completion_tokens"] == 64
    assert "".join(every_token) == "".join(joined)
    assert len(joined) <= 3 < len(every_token)  # the first text, the rest (a slow machine: one more)


@pytest.mark.parametrize("value", ["fast", "-1", "1001", "nan", ""])
def test_a_malformed_interval_is_refused_by_name(server: RunningServer, value: str) -> None:
    response = httpx.post(
        f"{server.v1}/completions", json=BODY, headers={**AUTH, STREAM_INTERVAL_HEADER: value}, timeout=60
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and STREAM_INTERVAL_HEADER in error["message"]


def test_the_openapi_document_names_the_header(server: RunningServer) -> None:
    paths = httpx.get(f"{server.base_url}/docs/openapi.json", timeout=10).json()["paths"]
    for path in ("/v1/completions", "/v1/chat/completions"):
        (header,) = [p for p in paths[path]["post"]["parameters"] if p["name"] == STREAM_INTERVAL_HEADER]
        assert header["in"] == "header" and not header["required"]
        assert (header["schema"]["minimum"], header["schema"]["maximum"]) == (0, 1000)
