"""Two gateways on one Postgres and one Redis: keys, limits and records are shared, exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers import AUTH, RunningServer, TinyModels, write_catalog


@pytest.fixture
def gateways(
    server_factory: Callable[..., RunningServer],
    tiny_models: TinyModels,
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
) -> tuple[RunningServer, RunningServer]:
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512}})
    env = {"PINAIVU_DATABASE_URL": postgres_url, "PINAIVU_REDIS_URL": redis_url}
    first = server_factory("--models-file", str(catalog), env=env)
    return first, server_factory("--models-file", str(catalog), env=env)


def chat(server: RunningServer, key: str) -> httpx.Response:
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return httpx.post(
        f"{server.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
    )


def new_key(server: RunningServer, **settings: object) -> dict[str, str]:
    response = httpx.post(
        f"{server.base_url}/admin/keys", json={"name": "shared", **settings}, headers=AUTH, timeout=10
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_keys_and_records_made_on_one_are_seen_by_the_other(gateways: tuple[RunningServer, RunningServer]) -> None:
    a, b = gateways
    created = new_key(a)
    answered = chat(b, created["key"])
    assert answered.status_code == 200, answered.text
    request_id = answered.json()["request_id"]
    record = httpx.get(f"{a.v1}/requests/{request_id}", headers=AUTH, timeout=10)
    assert record.status_code == 200 and record.json()["key_id"] == created["id"]
    revoked = httpx.delete(f"{b.base_url}/admin/keys/{created['id']}", headers=AUTH, timeout=10)
    assert revoked.status_code == 200
    refused = chat(a, created["key"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked_api_key"


def test_exact_rpm_across_both(gateways: tuple[RunningServer, RunningServer]) -> None:
    a, b = gateways
    key = new_key(a, rpm=6)["key"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=60) as http:
            body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            calls = [http.post(f"{(a, b)[i % 2].v1}/chat/completions", json=body) for i in range(16)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(burst())
    assert sorted(r.status_code for r in responses) == [200] * 6 + [429] * 10
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["type"] == "requests"
        assert 50 <= int(refused.headers["retry-after"]) <= 60


def test_a_stalled_redis_is_a_bounded_503_and_never_freezes_the_server(
    server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path, redis_url: str
) -> None:
    """Redis frozen for 8 s (DEBUG SLEEP): a chat is refused 503 storage_unavailable after the limiter's
    0.5 s timeout, and /v1/node is served meanwhile (the synchronous limiter froze the event loop until
    its own 5 s socket timeout, so both waited 5 s)."""
    import concurrent.futures
    import threading
    import time

    import redis

    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512}})
    env = {"PINAIVU_REDIS_URL": redis_url, "PINAIVU_REDIS_TIMEOUT_S": "0.5"}
    server = server_factory("--models-file", str(catalog), env=env)
    assert chat(server, AUTH["authorization"].split()[1]).status_code == 200
    stall_s = 8
    sleeper = threading.Thread(
        target=lambda: redis.Redis.from_url(redis_url, socket_timeout=60).execute_command("DEBUG", "SLEEP", stall_s)
    )
    sleeper.start()
    try:
        time.sleep(0.3)  # the sleep has begun
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            refused = pool.submit(chat, server, AUTH["authorization"].split()[1])
            node = httpx.get(f"{server.v1}/node", timeout=30)
            node_s = time.monotonic() - started
            answer = refused.result()
            answer_s = time.monotonic() - started
        assert node.status_code == 200 and node_s < 3
        assert answer.status_code == 503, answer.text[:300]
        assert answer.json()["error"]["code"] == "storage_unavailable"
        assert answer_s < 3
    finally:
        sleeper.join()
    assert chat(server, AUTH["authorization"].split()[1]).status_code == 200  # Redis is back, so is the limiter
