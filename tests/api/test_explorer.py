"""The request log and explorer API over real HTTP: lookup, privacy, listing, verification."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from pinaivu_local.requestlog.commitment import canonical_json, input_digest, output_digest
from tests.helpers import AUTH, NO_EOG, TEST_KEY, RunningServer, TinyModels, write_catalog

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]


@pytest.fixture
def srv(server_factory: Callable[..., RunningServer], two_models: Path) -> RunningServer:
    return server_factory("--models-file", str(two_models), "--log-format", "json")


def user_key(server: RunningServer, name: str) -> str:
    response = httpx.post(f"{server.base_url}/admin/keys", json={"name": name}, headers=AUTH, timeout=10)
    return str(response.json()["key"])


def explorer(server: RunningServer, key: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method, f"{server.v1}/requests{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
    )


def wait_for_record(server: RunningServer, key: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        response = explorer(server, key, "GET", f"/{request_id}")
        if response.status_code == 200:
            return dict(response.json())
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)


def test_record_fields_and_commitment(srv: RunningServer) -> None:
    key = user_key(srv, "alice")
    client = openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2:1b", messages=MESSAGES, max_tokens=6, temperature=0, seed=3, stop=["zz"], logit_bias=NO_EOG
    )
    out = raw.parse()
    request_id = raw.headers["x-request-id"]
    record = wait_for_record(srv, key, request_id)
    assert record["request_id"] == request_id and record["key_name"] == "alice"
    assert record["model"] == "llama3.2:1b" and record["status"] == 200 and record["finish_reason"] == "length"
    assert record["usage"] == out.usage.model_dump(exclude={"prompt_tokens_details"}, exclude_none=True)  # type: ignore[union-attr]
    assert len(record["model_sha256"]) == 64
    timings = record["timings"]
    assert timings["queue_ms"] >= 0 and timings["time_to_first_token_ms"] > 0
    assert timings["total_ms"] >= timings["time_to_first_token_ms"]
    sampling = record["sampling"]
    assert (sampling["temperature"], sampling["seed"], sampling["max_tokens"], sampling["stop"]) == (0, 3, 6, ["zz"])
    assert record["commitment"]["input_sha256"] == input_digest(MESSAGES)
    assert record["commitment"]["output_sha256"] == output_digest(out.choices[0].message.content or "")
    assert record["content"] is None  # content is not stored by default
    assert key not in json.dumps(record)


def test_other_keys_get_404_admin_sees_all(srv: RunningServer) -> None:
    alice, bob = user_key(srv, "alice"), user_key(srv, "bob")
    raw = openai.OpenAI(base_url=srv.v1, api_key=alice, max_retries=0).completions.with_raw_response.create(
        model="llama3.2:3b", prompt="hello", max_tokens=3
    )
    request_id = raw.headers["x-request-id"]
    wait_for_record(srv, alice, request_id)
    hidden = explorer(srv, bob, "GET", f"/{request_id}")
    missing = explorer(srv, bob, "GET", "/req_00000000000000000000000000000000")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "request_not_found"
    assert explorer(srv, TEST_KEY, "GET", f"/{request_id}").status_code == 200
    assert explorer(srv, bob, "GET", "").json()["data"] == []
    assert explorer(srv, bob, "POST", f"/{request_id}/verify", {"prompt": "hello", "output": ""}).status_code == 404


def test_listing_newest_first_filters_and_pages(srv: RunningServer) -> None:
    key = user_key(srv, "lister")
    client = openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0)
    ids = []
    for i in range(5):
        model = "llama3.2:1b" if i % 2 == 0 else "llama3.2:3b"
        raw = client.completions.with_raw_response.create(model=model, prompt=f"p{i}", max_tokens=2)
        ids.append(raw.headers["x-request-id"])
    wait_for_record(srv, key, ids[-1])
    first = explorer(srv, key, "GET", "?limit=2").json()
    assert [r["request_id"] for r in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    second = explorer(srv, key, "GET", f"?limit=2&before={first['next_before']}").json()
    assert [r["request_id"] for r in second["data"]] == ids[::-1][2:4]
    small = explorer(srv, key, "GET", "?model=llama3.2:1b&status=200").json()["data"]
    assert [r["request_id"] for r in small] == [ids[4], ids[2], ids[0]]
    assert explorer(srv, key, "GET", "?limit=0").status_code == 400
    assert explorer(srv, key, "GET", "?before=yesterday").status_code == 400


def test_verify_hashes_and_replay(srv: RunningServer) -> None:
    key = user_key(srv, "verifier")
    client = openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2:3b", messages=MESSAGES, max_tokens=12, temperature=0, logit_bias=NO_EOG
    )
    text = raw.parse().choices[0].message.content or ""
    request_id = raw.headers["x-request-id"]
    wait_for_record(srv, key, request_id)

    good = explorer(srv, key, "POST", f"/{request_id}/verify", {"messages": MESSAGES, "output": text}).json()
    assert good["verified"] is True and good["input_matches"] and good["output_matches"]
    replay = dict(good["replay"])
    assert replay.pop("request_id").startswith("req_")
    assert replay == {"performed": True, "reproduced": True, "first_divergence": None}

    tampered = explorer(srv, key, "POST", f"/{request_id}/verify", {"messages": MESSAGES, "output": text + "!"}).json()
    assert tampered["verified"] is False and tampered["output_matches"] is False and tampered["replay"] is None
    other = [{"role": "user", "content": "Hello?"}]
    assert (
        explorer(srv, key, "POST", f"/{request_id}/verify", {"messages": other, "output": text}).json()["input_matches"]
        is False
    )
    wrong_kind = explorer(srv, key, "POST", f"/{request_id}/verify", {"prompt": "x", "output": text})
    assert wrong_kind.status_code == 400 and wrong_kind.json()["error"]["param"] == "messages"


def test_replays_count_against_the_callers_limits(srv: RunningServer) -> None:
    response = httpx.post(f"{srv.base_url}/admin/keys", json={"name": "frugal", "rpm": 1}, headers=AUTH, timeout=10)
    key = response.json()["key"]
    raw = openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0).completions.with_raw_response.create(
        model="llama3.2:1b", prompt="once", max_tokens=3, temperature=0
    )
    request_id = raw.headers["x-request-id"]
    wait_for_record(srv, key, request_id)
    body = {"prompt": "once", "output": raw.parse().choices[0].text}
    result = explorer(srv, key, "POST", f"/{request_id}/verify", body).json()
    assert result["verified"] is True  # the hashes need no quota
    assert result["replay"]["performed"] is False and "1 per minute" in result["replay"]["reason"]


def test_random_sampling_is_verified_but_not_replayed(srv: RunningServer) -> None:
    key = user_key(srv, "random")
    raw = openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0).completions.with_raw_response.create(
        model="llama3.2:1b", prompt="abc", max_tokens=4, temperature=1.0
    )
    request_id = raw.headers["x-request-id"]
    wait_for_record(srv, key, request_id)
    result = explorer(
        srv, key, "POST", f"/{request_id}/verify", {"prompt": "abc", "output": raw.parse().choices[0].text}
    )
    assert result.json()["verified"] is True
    assert result.json()["replay"]["performed"] is False and "seed" in result.json()["replay"]["reason"]


def test_cancelled_streams_are_logged(srv: RunningServer) -> None:
    key = user_key(srv, "leaver")
    body = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 400, "stream": True, "logit_bias": NO_EOG}
    with httpx.stream(
        "POST", f"{srv.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as response:
        request_id = response.headers["x-request-id"]
        next(response.iter_lines())
    record = wait_for_record(srv, key, request_id)
    assert record["status"] == 499 and record["commitment"]["output_sha256"] is None


def test_no_prompt_or_output_in_the_database_by_default(srv: RunningServer) -> None:
    key = user_key(srv, "private")
    secret = "my very secret prompt"
    raw = openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0).completions.with_raw_response.create(
        model="llama3.2:1b", prompt=secret, max_tokens=3
    )
    wait_for_record(srv, key, raw.headers["x-request-id"])
    with sqlite3.connect(srv.data_dir / "pinaivu.db") as conn:
        rows = conn.execute("SELECT * FROM request_log").fetchall()
    assert rows and secret not in repr(rows)


def test_content_logging_when_asked(
    server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path
) -> None:
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 256}})
    srv = server_factory("--models-file", str(catalog), env={"PINAIVU_LOG_CONTENT": "true"})
    raw = openai.OpenAI(base_url=srv.v1, api_key=TEST_KEY, max_retries=0).completions.with_raw_response.create(
        model="llama3.2:1b", prompt="keep me", max_tokens=3
    )
    record = wait_for_record(srv, TEST_KEY, raw.headers["x-request-id"])
    assert record["content"] == {"input": "keep me", "output": raw.parse().choices[0].text}
    assert canonical_json(record["content"]["input"]) == '"keep me"'


def test_metrics_and_access_log(srv: RunningServer) -> None:
    created = httpx.post(f"{srv.base_url}/admin/keys", json={"name": "metered"}, headers=AUTH, timeout=10).json()
    key, key_id = created["key"], created["id"]
    client = openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0)
    raw = client.completions.with_raw_response.create(model="llama3.2:1b", prompt="count me", max_tokens=3)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
    wait_for_record(srv, key, raw.headers["x-request-id"])
    text = httpx.get(f"{srv.base_url}/metrics", timeout=10).text
    # /metrics is open to anyone: key ids label the series, never the names people give keys
    assert f'pinaivu_requests_total{{key="{key_id}",model="llama3.2:1b",status="200"}} 1.0' in text
    assert f'pinaivu_requests_total{{key="{key_id}",model="unknown",status="404"}} 1.0' in text
    assert "metered" not in text
    assert 'pinaivu_tokens_total{direction="out",model="llama3.2:1b"}' in text
    assert 'pinaivu_time_to_first_token_seconds_count{model="llama3.2:1b"}' in text
    assert 'pinaivu_queue_depth{model="llama3.2:3b"} 0.0' in text
    assert 'pinaivu_running_sequences{model="llama3.2:1b"}' in text
    lines = [json.loads(line) for line in srv.log().splitlines() if line.startswith('{"method"')]
    mine = next(line for line in lines if line.get("request_id") == raw.headers["x-request-id"])
    assert mine["key"] == "metered" and mine["model"] == "llama3.2:1b" and mine["status"] == 200
    assert mine["tokens"] > 3 and mine["ms"] > 0
    assert key not in srv.log()


def test_health_reports_slots(srv: RunningServer) -> None:
    models = httpx.get(f"{srv.base_url}/health", timeout=10).json()["models"]
    assert all(m["slots"] == 4 and m["running"] == 0 and m["queued"] == 0 for m in models)
