"""A full model answers 503 with Retry-After; a cancelled stream frees its slot for the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers import AUTH, NO_EOG, RunningServer, TinyModels, write_catalog


@pytest.fixture
def narrow(server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path) -> RunningServer:
    """One sequence, one queue place."""
    catalog = write_catalog(
        tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.slow), "n_ctx": 32768, "parallel": 1}}
    )
    return server_factory("--models-file", str(catalog), env={"PINAIVU_MAX_QUEUE": "1"})


# Minutes of generation on the slow model: only a cancellation ends it within the test's deadlines.
LONG = 32000
# How soon a slot must be free after its client left (an engine step is milliseconds).
FREED_WITHIN_S = 5.0


def long_body(max_tokens: int) -> dict[str, object]:
    return {
        "model": "llama3.2:1b",
        "messages": [{"role": "user", "content": "go on"}],
        "max_tokens": max_tokens,
        "stream": True,
        "logit_bias": NO_EOG,
    }


def health(server: RunningServer) -> dict[str, int]:
    model = httpx.get(f"{server.base_url}/health", timeout=10).json()["models"][0]
    return {"running": model["running"], "queued": model["queued"]}


def wait_for(server: RunningServer, running: int, queued: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while health(server) != {"running": running, "queued": queued}:
        assert time.monotonic() < deadline, health(server)
        time.sleep(0.05)


def test_overflow_is_503_and_cancel_frees_the_slot(narrow: RunningServer) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=narrow.v1, headers=AUTH, timeout=60) as http:
            first_cm = http.stream("POST", "/chat/completions", json=long_body(LONG))
            first = await first_cm.__aenter__()
            assert first.status_code == 200
            lines = first.aiter_lines()
            assert (await anext(lines)).startswith("data: ")  # generating
            queued = asyncio.create_task(http.post("/chat/completions", json={**long_body(3), "stream": False}))
            await asyncio.to_thread(wait_for, narrow, 1, 1)

            overflow = await http.post("/chat/completions", json=long_body(3))
            assert overflow.status_code == 503
            assert overflow.headers["retry-after"] == "1"
            error = overflow.json()["error"]
            assert error["code"] == "no_nodes_available"
            assert "retry" in error["message"].lower()
            assert "request_id" not in overflow.json()

            await first_cm.__aexit__(None, None, None)  # the client goes away mid-stream
            done = await asyncio.wait_for(queued, timeout=FREED_WITHIN_S)
            assert done.status_code == 200
            assert done.json()["usage"]["completion_tokens"] == 3

    asyncio.run(scenario())
    wait_for(narrow, 0, 0, within=FREED_WITHIN_S)


def test_non_streaming_client_that_disconnects_frees_the_slot(narrow: RunningServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{narrow.v1}/chat/completions", json={**long_body(LONG), "stream": False}, headers=AUTH, timeout=0.5
        )
    wait_for(narrow, 0, 0, within=FREED_WITHIN_S)


def test_a_client_that_gives_up_is_a_quiet_499(narrow: RunningServer) -> None:
    """Not a 500 in /metrics or the access log, and no traceback in the server's log."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{narrow.v1}/chat/completions", json={**long_body(LONG), "stream": False}, headers=AUTH, timeout=0.5
        )
    wait_for(narrow, 0, 0, within=FREED_WITHIN_S)
    deadline = time.monotonic() + 10
    while "status=499" not in narrow.log():
        assert time.monotonic() < deadline, narrow.log()[-2000:]
        time.sleep(0.05)
    metrics = httpx.get(f"{narrow.base_url}/metrics", timeout=10).text
    assert 'status="499"' in metrics and 'status="500"' not in metrics
    assert "Traceback" not in narrow.log() and "status=500" not in narrow.log()
