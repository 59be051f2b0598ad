"""How often a stream's text goes out: the server's interval (20 ms), or what a request's header asks."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from pinaivu_local.api.services import services_of
from pinaivu_local.engine.outbox import Outbox
from pinaivu_local.wire import STREAM_INTERVAL_HEADER
from tests.helpers import AUTH, NO_EOG, RunningServer

BODY = {"model": "llama3.2:1b", "prompt": "pace me", "max_tokens": 64, "temperature": 0, "logit_bias": NO_EOG}


class StillClock:
    """Holds an in-process app's engine to a clock the test controls, and its event loop in step with it.

    The clock its requests' text intervals are measured with stands still, so any interval above 0 (the
    server's 20 ms) holds all of a stream's text after its first until its end, however long the
    generation takes. And after each engine step that handed text over, the engine thread waits until
    the stream has taken it, so the event loop never finds two hand-overs waiting to be joined into one
    chunk: each is a chunk of its own. What a stream's chunks are then depends on its interval alone,
    not on the machine's speed or load.
    """

    def __init__(self, client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch) -> None:
        self._client = client
        self._taken = threading.Semaphore(0)
        scheduler = services_of(client.app).pool.get("llama3.2:1b")._scheduler
        monkeypatch.setattr(scheduler, "_now", lambda: 0.0)
        deliver, take = scheduler._deliver, Outbox.take

        def deliver_then_wait(out: list[tuple[object, object]]) -> None:
            deliver(out)  # type: ignore[arg-type]
            if out:
                self._taken.acquire(timeout=30)  # a reader that never comes: go on, and its test fails

        async def take_and_tell(outbox: Outbox) -> list[object]:
            items = await take(outbox)
            self._taken.release()
            return items

        monkeypatch.setattr(scheduler, "_deliver", deliver_then_wait)
        monkeypatch.setattr(Outbox, "take", take_and_tell)

    def stream(self, headers: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
        """The texts of a completion stream's chunks (empty ones left out), and its last chunk."""
        body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
        with self._client.stream("POST", "/v1/completions", json=body, headers=headers) as response:
            assert response.status_code == 200, response.read()
            events = [line.removeprefix("data: ") for line in response.iter_lines() if line]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        return [c["choices"][0]["text"] for c in chunks if c["choices"] and c["choices"][0]["text"]], chunks[-1]


@pytest.fixture
def still(app_client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch) -> StillClock:
    return StillClock(app_client, monkeypatch)


def test_a_request_may_ask_for_every_token_at_once(still: StillClock, app_client: TestClient[Litestar]) -> None:
    """A gateway asks its nodes for a chunk per token (it counts a stream cut short by its chunks): with the
    header at 0 every token's text is a chunk of its own; without it, the server's interval holds the text
    after the first token's until the end. The text is the same, and each token's as a logprobs request
    lists it."""
    every_token, last = still.stream({STREAM_INTERVAL_HEADER: "0"})
    joined, _ = still.stream({})
    listed = app_client.post("/v1/completions", json={**BODY, "logprobs": 0})
    assert listed.status_code == 200, listed.text
    tokens = listed.json()["choices"][0]["logprobs"]["tokens"]
    assert last["usage"]["completion_tokens"] == len(tokens) == 64
    assert every_token == [t for t in tokens if t]
    assert joined == ["".join(every_token)[: len(every_token[0])], "".join(every_token)[len(every_token[0]) :]]


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
