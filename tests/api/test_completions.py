"""POST /v1/completions (text completion) over real HTTP."""

from __future__ import annotations

import json

import httpx
import openai

from tests.helpers import AUTH, NO_EOG, RunningServer


def test_text_completion_shape(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(
        model="llama3.2:3b", prompt="The quick brown fox", max_tokens=7, temperature=0, logit_bias=NO_EOG
    )
    out = raw.parse()
    body = json.loads(raw.text)
    assert out.object == "text_completion"
    assert out.id.startswith("cmpl-")
    assert out.choices[0].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 7
    assert out.usage.prompt_tokens > 1
    assert body["request_id"] == raw.headers["x-request-id"]


def test_default_max_tokens_is_16(client: openai.OpenAI) -> None:
    out = client.completions.create(model="llama3.2:1b", prompt="hello", temperature=0, logit_bias=NO_EOG)
    assert out.usage is not None and out.usage.completion_tokens == 16


def test_prompt_as_single_item_list(client: openai.OpenAI) -> None:
    a = client.completions.create(model="llama3.2:1b", prompt=["hello there"], max_tokens=5, temperature=0)
    b = client.completions.create(model="llama3.2:1b", prompt="hello there", max_tokens=5, temperature=0)
    assert a.choices[0].text == b.choices[0].text


def test_streaming_text_completion(server: RunningServer) -> None:
    body = {
        "model": "llama3.2:1b",
        "prompt": "hello",
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": NO_EOG,
    }
    with httpx.stream("POST", f"{server.v1}/completions", json=body, headers=AUTH, timeout=60) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(c["object"] == "text_completion" and c["request_id"].startswith("req_") for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_prompt_as_token_ids(client: openai.OpenAI, server: RunningServer) -> None:
    out = client.completions.create(model="llama3.2:1b", prompt=[320, 104, 101], max_tokens=3, logit_bias=NO_EOG)
    assert out.usage is not None and out.usage.prompt_tokens == 3
    bad = httpx.post(
        f"{server.v1}/completions", json={"model": "llama3.2:1b", "prompt": [99999]}, headers=AUTH, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


def test_ignore_eos_generates_to_max_tokens(server: RunningServer) -> None:
    # A bias that makes <|eot_id|> certain: without ignore_eos the generation stops at once.
    body = {"model": "llama3.2:1b", "prompt": "hello", "max_tokens": 6, "temperature": 0, "logit_bias": {"324": 100}}
    stopped = httpx.post(f"{server.v1}/completions", json=body, headers=AUTH, timeout=60).json()
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["usage"]["completion_tokens"] == 0
    ignored = httpx.post(f"{server.v1}/completions", json={**body, "ignore_eos": True}, headers=AUTH, timeout=60).json()
    assert ignored["choices"][0]["finish_reason"] == "length"
    assert ignored["usage"]["completion_tokens"] == 6


def test_ignore_eos_must_be_a_boolean(server: RunningServer) -> None:
    body = {"model": "llama3.2:1b", "prompt": "hello", "ignore_eos": "yes"}
    response = httpx.post(f"{server.v1}/completions", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "ignore_eos"]
