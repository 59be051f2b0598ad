"""Issue #33, point 5: stored content holding U+0000 is kept exactly, on SQLite and on Postgres.

Postgres text cannot hold U+0000; an answer whose output held it was a 500 after its tokens were
charged, and a stream's record was lost after the text went out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pinaivu_local.requestlog.commitment import output_digest
from tests.helpers import AUTH, RunningServer, TinyModels, write_catalog

# Token 0 of the tiny vocabulary is the byte 0: this bias makes every output token U+0000.
NUL_BIAS = {"0": 100}
# The prompt carries U+0000 too (the stored input is JSON, where it is escaped; kept exact either way).
MESSAGES = [{"role": "user", "content": "say \x00 nothing"}]


@pytest.fixture(params=["sqlite", "postgres"])
def content_server(
    request: pytest.FixtureRequest,
    server_factory: Callable[..., RunningServer],
    tiny_models: TinyModels,
    tmp_path: Path,
) -> RunningServer:
    """A server that stores prompts and outputs, on SQLite or on a real Postgres."""
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 256}})
    env = {"PINAIVU_LOG_CONTENT": "true"}
    if request.param == "postgres":
        env["PINAIVU_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    return server_factory("--models-file", str(catalog), env=env)


CHAT = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 4, "temperature": 0, "logit_bias": NUL_BIAS}


def stored(server: RunningServer, request_id: str) -> dict[str, object]:
    response = httpx.get(f"{server.v1}/requests/{request_id}", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_answer_holding_nul_is_served_and_recorded_exactly(content_server: RunningServer) -> None:
    response = httpx.post(f"{content_server.v1}/chat/completions", json=CHAT, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    text = response.json()["choices"][0]["message"]["content"]
    assert text == "\x00" * 4
    record = stored(content_server, response.json()["request_id"])
    assert record["status"] == 200
    assert record["content"] == {"input": MESSAGES, "output": text}
    assert record["commitment"]["output_sha256"] == output_digest(text)  # type: ignore[index]
    verified = httpx.post(
        f"{content_server.v1}/requests/{record['request_id']}/verify",
        json={"messages": MESSAGES, "output": text},
        headers=AUTH,
        timeout=60,
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["verified"] is True and verified.json()["replay"]["reproduced"] is True


def test_a_stream_holding_nul_ends_with_done_and_is_recorded_exactly(content_server: RunningServer) -> None:
    text = ""
    url = f"{content_server.v1}/chat/completions"
    with httpx.stream("POST", url, json={**CHAT, "stream": True}, headers=AUTH, timeout=60) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        chunk = json.loads(event)
        assert "error" not in chunk, chunk
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
    assert text == "\x00" * 4
    record = stored(content_server, response.headers["x-request-id"])
    assert record["status"] == 200 and record["content"] == {"input": MESSAGES, "output": text}
