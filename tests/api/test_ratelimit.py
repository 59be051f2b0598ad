"""Per-key limits over real HTTP: exact admission, 429 + Retry-After, headers, the SDK's retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import TEST_KEY, RunningServer, TinyModels, write_catalog

WINDOW_S = 2  # a short window so retries happen within the test


@pytest.fixture
def limited(server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path) -> RunningServer:
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512}})
    return server_factory("--models-file", str(catalog), env={"PINAIVU_RATELIMIT_WINDOW_S": str(WINDOW_S)})


def new_key(server: RunningServer, **limits: int) -> str:
    response = httpx.post(
        f"{server.base_url}/admin/keys",
        json={"name": "limited", **limits},
        headers={"authorization": f"Bearer {TEST_KEY}"},
        timeout=10,
    )
    return str(response.json()["key"])


def body(max_tokens: int = 2) -> dict[str, object]:
    return {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}


def test_exactly_n_of_m_concurrent_requests(limited: RunningServer) -> None:
    key = new_key(limited, rpm=5)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=limited.v1, headers={"authorization": f"Bearer {key}"}, timeout=60
        ) as http:
            return await asyncio.gather(*[http.post("/chat/completions", json=body()) for _ in range(12)])

    statuses = sorted(r.status_code for r in asyncio.run(burst()))
    assert statuses == [200] * 5 + [429] * 7


def test_429_shape_and_headers(limited: RunningServer) -> None:
    key = new_key(limited, rpm=1)
    headers = {"authorization": f"Bearer {key}"}
    ok = httpx.post(f"{limited.v1}/chat/completions", json=body(), headers=headers, timeout=30)
    assert ok.status_code == 200
    limited_response = httpx.post(f"{limited.v1}/chat/completions", json=body(), headers=headers, timeout=30)
    assert limited_response.status_code == 429
    error = limited_response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "1 per minute" in error["message"] and "Retry in" in error["message"]
    assert 1 <= int(limited_response.headers["retry-after"]) <= WINDOW_S
    assert 0 < int(limited_response.headers["retry-after-ms"]) <= WINDOW_S * 1000
    assert limited_response.headers["x-ratelimit-remaining-requests"] == "0"
    assert "request_id" not in limited_response.json()


def test_token_limit(limited: RunningServer) -> None:
    key = new_key(limited, tpm=300)
    headers = {"authorization": f"Bearer {key}"}
    too_big = httpx.post(f"{limited.v1}/chat/completions", json=body(400), headers=headers, timeout=30)
    assert too_big.status_code == 429
    assert too_big.json()["error"]["type"] == "tokens" and "Request too large" in too_big.json()["error"]["message"]
    ok = httpx.post(f"{limited.v1}/chat/completions", json=body(50), headers=headers, timeout=30)
    assert ok.status_code == 200
    used = ok.json()["usage"]["total_tokens"]
    # the reservation (prompt + 50) was corrected to the real usage when the request ended
    after = httpx.get(f"{limited.v1}/models", headers=headers, timeout=10)
    assert int(after.headers["x-ratelimit-remaining-tokens"]) == 300 - used


def test_headers_present_and_decreasing(limited: RunningServer) -> None:
    key = new_key(limited, rpm=10, tpm=100_000)
    headers = {"authorization": f"Bearer {key}"}
    seen = []
    for _ in range(3):
        response = httpx.post(f"{limited.v1}/chat/completions", json=body(), headers=headers, timeout=30)
        assert response.headers["x-ratelimit-limit-requests"] == "10"
        assert response.headers["x-ratelimit-limit-tokens"] == "100000"
        assert response.headers["x-ratelimit-reset-requests"].endswith(("ms", "s"))
        assert response.headers["x-ratelimit-reset-tokens"].endswith(("ms", "s"))
        seen.append(
            (
                int(response.headers["x-ratelimit-remaining-requests"]),
                int(response.headers["x-ratelimit-remaining-tokens"]),
            )
        )
    assert [s[0] for s in seen] == [9, 8, 7]
    assert seen[0][1] > seen[1][1] > seen[2][1]
    # errors of an authenticated caller carry them too
    bad = httpx.post(
        f"{limited.v1}/chat/completions", json={"model": "nope", "messages": []}, headers=headers, timeout=10
    )
    # ... and it counted, as every authenticated inference request does, whatever its outcome
    assert bad.status_code == 422 and bad.headers["x-ratelimit-remaining-requests"] == "6"


@pytest.fixture
def minute_window(
    server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path
) -> RunningServer:
    """A server with the real one-minute window: nothing leaves it while a test runs, however slow."""
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512}})
    return server_factory("--models-file", str(catalog))


def test_refused_requests_count_against_the_requests_limit_but_cost_no_tokens(minute_window: RunningServer) -> None:
    """Refused work is not free: a key at 3 rpm that sends a bad body, an unknown model and a prompt that
    cannot fit has used its minute; the tokens limit is untouched."""
    key = new_key(minute_window, rpm=3, tpm=10_000)
    headers = {"authorization": f"Bearer {key}"}
    url = f"{minute_window.v1}/chat/completions"
    wrong = ({"model": "llama3.2:1b"}, {**body(), "model": "gpt-4"}, {**body(), "max_tokens": 10_000})
    statuses = [httpx.post(url, json=w, headers=headers, timeout=10).status_code for w in wrong]
    assert statuses == [422, 404, 400]
    refused = httpx.post(url, json=body(), headers=headers, timeout=30)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "requests"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "10000"


def test_a_schema_that_takes_long_to_compile_counts_before_it_is_compiled(minute_window: RunningServer) -> None:
    """The hostile case of the issue: a key at 2 rpm sends schemas whose grammar is refused; only two are
    compiled, the rest are 429s at once."""
    key = new_key(minute_window, rpm=2)
    headers = {"authorization": f"Bearer {key}"}
    bad_schema = {"type": "object", "properties": {"a": {"type": "nonsense"}}}
    request = {**body(), "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": bad_schema}}}
    statuses = [
        httpx.post(f"{minute_window.v1}/chat/completions", json=request, headers=headers, timeout=30).status_code
        for _ in range(5)
    ]
    assert statuses == [400, 400, 429, 429, 429]


def test_the_sdk_retries_after_the_advertised_delay(limited: RunningServer) -> None:
    key = new_key(limited, rpm=1)
    client = openai.OpenAI(base_url=limited.v1, api_key=key, max_retries=0)
    client.chat.completions.create(**body())  # type: ignore[call-overload]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**body())  # type: ignore[call-overload]
    assert caught.value.status_code == 429
    retrying = openai.OpenAI(base_url=limited.v1, api_key=key, max_retries=2)
    started = time.monotonic()
    out = retrying.chat.completions.create(**body())  # type: ignore[call-overload]
    waited = time.monotonic() - started
    assert out.choices and 0.3 < waited < WINDOW_S + 3
