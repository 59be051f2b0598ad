"""The one inference flow, in-process: the contract's order of checks, records, refunds and replays."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from pinaivu_local.api.services import services_of
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.requestlog.commitment import input_digest, output_digest
from tests.faults import fail_next_admission
from tests.helpers import NO_EOG

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello", "name": "ann"}]
CHAT: dict[str, Any] = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 6, "temperature": 0}


def new_key(client: TestClient[Litestar], **fields: Any) -> dict[str, str]:
    """Headers carrying a fresh key with `fields` (models, rpm, tpm)."""
    created = client.post("/admin/keys", json={"name": "k", **fields})
    assert created.status_code == 201, created.text
    return {"authorization": f"Bearer {created.json()['key']}"}


def record_of(client: TestClient[Litestar], request_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        found = client.get(f"/v1/requests/{request_id}", headers=headers)
        if found.status_code == 200:
            return dict(found.json())
        assert time.monotonic() < deadline, found.text
        time.sleep(0.05)


def test_checks_run_in_the_contracts_order(app_client: TestClient[Litestar]) -> None:
    """validation, model, permission, context budget, rate limit: each wins over the ones after it."""
    key = new_key(app_client, models=["llama3.2:1b"], tpm=300)
    long = [{"role": "user", "content": "word " * 600}]

    def status(body: dict[str, Any]) -> tuple[int, str | None]:
        answer = app_client.post("/v1/chat/completions", json=body, headers=key)
        return answer.status_code, (answer.json().get("error") or {}).get("code")

    assert status({"model": "nope", "messages": []})[0] == 422
    assert status({"model": "nope", "messages": long}) == (404, "model_not_found")
    assert status({"model": "llama3.2:3b", "messages": long}) == (403, "permission_denied")
    assert status({"model": "llama3.2:1b", "messages": long}) == (400, "context_length_exceeded")
    assert status({"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 400}) == (429, "rate_limit_exceeded")
    assert status({"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 4})[0] == 200


def test_a_finished_run_leaves_one_record_with_what_verification_needs(app_client: TestClient[Litestar]) -> None:
    answer = app_client.post("/v1/chat/completions", json={**CHAT, "seed": 5, "stop": ["zz"], "logit_bias": NO_EOG})
    assert answer.status_code == 200
    body = answer.json()
    record = record_of(app_client, body["request_id"])
    assert record["status"] == 200 and record["finish_reason"] == "length"
    assert record["usage"] == {k: v for k, v in body["usage"].items() if k != "prompt_tokens_details"}
    # The messages exactly as sent (the name included) are committed to, and the text as received.
    assert record["commitment"]["input_sha256"] == input_digest(MESSAGES)
    assert record["commitment"]["output_sha256"] == output_digest(body["choices"][0]["message"]["content"])
    sampling = SamplingParams(temperature=0, seed=5, stop=("zz",), logit_bias={int(k): v for k, v in NO_EOG.items()})
    assert record["sampling"] == json.loads(sampling.to_json(6))
    assert record["timings"]["total_ms"] > 0
    listed = app_client.get("/v1/requests", params={"limit": 100}).json()["data"]
    assert [r["request_id"] for r in listed].count(body["request_id"]) == 1


def test_a_request_the_engine_gives_back_costs_no_tokens(
    app_client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key(app_client, rpm=10, tpm=10_000)
    engine = services_of(app_client.app).pool.get("llama3.2:1b")
    fail_next_admission(engine, monkeypatch, RuntimeError("injected failure"))
    refused = app_client.post("/v1/chat/completions", json=CHAT, headers=key)
    assert refused.status_code == 503
    # It was a request (every authenticated inference request counts), but its tokens are given back.
    assert refused.headers["x-ratelimit-remaining-requests"] == "9"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "10000"


def test_replay_reproduces_through_the_same_flow(app_client: TestClient[Litestar]) -> None:
    answer = app_client.post("/v1/chat/completions", json={**CHAT, "logit_bias": NO_EOG}).json()
    record_of(app_client, answer["request_id"])
    text = answer["choices"][0]["message"]["content"]
    verified = app_client.post(
        f"/v1/requests/{answer['request_id']}/verify", json={"messages": MESSAGES, "output": text}
    )
    assert verified.status_code == 200
    assert verified.json()["verified"] is True
    replay = dict(verified.json()["replay"])
    replay_id = replay.pop("request_id")
    assert replay == {"performed": True, "reproduced": True, "first_divergence": None}
    # The replay is a request of its own: recorded as a replay, in usage and in /metrics.
    recorded = record_of(app_client, replay_id)
    assert recorded["replay_of"] == answer["request_id"] and recorded["status"] == 200
    assert recorded["commitment"]["input_sha256"] == input_digest(MESSAGES)
    assert recorded["usage"]["completion_tokens"] == answer["usage"]["completion_tokens"]
    assert record_of(app_client, answer["request_id"])["replay_of"] is None
    usage = app_client.get("/admin/usage").json()["keys"]
    assert sum(row["requests"] for row in usage.values()) >= 2
    assert 'pinaivu_replays_total{model="llama3.2:1b"} 1.0' in app_client.get("/metrics").text


def test_replay_passes_the_same_permission_check(app_client: TestClient[Litestar]) -> None:
    """A key that may no longer use the model cannot have it run again through a replay."""
    created = app_client.post("/admin/keys", json={"name": "moved", "models": ["llama3.2:1b"]}).json()
    key = {"authorization": f"Bearer {created['key']}"}
    answer = app_client.post("/v1/chat/completions", json=CHAT, headers=key).json()
    record_of(app_client, answer["request_id"], key)
    app_client.patch(f"/admin/keys/{created['id']}", json={"models": ["llama3.2:3b"]})
    held = {"messages": MESSAGES, "output": answer["choices"][0]["message"]["content"]}
    verified = app_client.post(f"/v1/requests/{answer['request_id']}/verify", json=held, headers=key).json()
    assert verified["verified"] is True
    assert verified["replay"]["performed"] is False
    assert "may not use the model" in verified["replay"]["reason"]
