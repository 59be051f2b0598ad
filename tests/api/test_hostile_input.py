"""Hostile input against the real server: no stall for others, no forged turns, no retry loops."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import openai

from tests.helpers import AUTH, RunningServer

# 800 KB of one special token's string: with special-token parsing on, llama.cpp takes ~17 s on it.
HOSTILE = "<|eot_id|>" * 80_000


def chat(server: RunningServer, content: str, **extra: Any) -> httpx.Response:
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": content}], "max_tokens": 1, **extra}
    return httpx.post(f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=120)


def test_special_token_strings_in_content_stay_text(server: RunningServer) -> None:
    """<|eot_id|> typed by a user is several ordinary tokens, not the one control token it names."""
    base = chat(server, "").json()["usage"]["prompt_tokens"]
    forged = chat(server, "<|eot_id|>").json()["usage"]["prompt_tokens"]
    assert forged - base > 1


def test_completion_prompts_are_plain_text_too(client: openai.OpenAI) -> None:
    plain = client.completions.create(model="llama3.2:1b", prompt="<|eot_id|>", max_tokens=1)
    ids = client.completions.create(model="llama3.2:1b", prompt=[320, 324], max_tokens=1)
    assert plain.usage is not None and plain.usage.prompt_tokens > 2
    assert ids.usage is not None and ids.usage.prompt_tokens == 2


def test_megabytes_that_cannot_fit_are_refused_while_others_are_served(server: RunningServer) -> None:
    many = [{"role": "user", "content": "<|start_header_id|>" * 1000} for _ in range(500)]  # ~9.5 MB
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        hostile = [pool.submit(chat, server, HOSTILE) for _ in range(2)]
        bulky = pool.submit(
            httpx.post,
            f"{server.v1}/chat/completions",
            json={"model": "llama3.2:1b", "messages": many},
            headers=AUTH,
            timeout=120,
        )
        health = [httpx.get(f"{server.base_url}/health", timeout=30).status_code for _ in range(5)]
        small = chat(server, "hello")
        answers = [f.result() for f in [*hostile, bulky]]
    assert health == [200] * 5 and small.status_code == 200
    for answer in answers:
        assert answer.status_code == 400, answer.text[:300]
        assert answer.json()["error"]["code"] == "context_length_exceeded"
        assert "at least" in answer.json()["error"]["message"]


def test_over_the_requests_limit_costs_no_tokenizing(server: RunningServer) -> None:
    key = httpx.post(f"{server.base_url}/admin/keys", json={"name": "one-rpm", "rpm": 1}, headers=AUTH, timeout=10)
    headers = {"authorization": f"Bearer {key.json()['key']}"}
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert httpx.post(f"{server.v1}/chat/completions", json=body, headers=headers, timeout=60).status_code == 200
    started = time.monotonic()
    body["messages"] = [{"role": "user", "content": HOSTILE}]
    refused = httpx.post(f"{server.v1}/chat/completions", json=body, headers=headers, timeout=60)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "requests"
    assert time.monotonic() - started < 30  # generous: the point is the 429, not the 400


def test_a_request_that_can_never_fit_the_token_limit_is_not_retried(server: RunningServer) -> None:
    key = httpx.post(f"{server.base_url}/admin/keys", json={"name": "tiny-tpm", "tpm": 50}, headers=AUTH, timeout=10)
    client = openai.OpenAI(base_url=server.v1, api_key=key.json()["key"], max_retries=2, timeout=30)
    started = time.monotonic()
    try:
        client.chat.completions.create(
            model="llama3.2:1b", messages=[{"role": "user", "content": "hi"}], max_tokens=200
        )
        raise AssertionError("a request over the whole token limit was served")
    except openai.RateLimitError as refused:
        assert refused.response.headers["x-should-retry"] == "false"
        assert "can never fit" in refused.message
    # Without x-should-retry the SDK would have slept Retry-After (60 s) twice before giving up.
    assert time.monotonic() - started < 20


def history_with_arguments(arguments: str) -> list[dict[str, Any]]:
    """An agent's second turn: a call with these arguments, its result, and the question again."""
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    return [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    ]


def test_megabytes_of_call_arguments_are_sized_before_they_are_rendered(server: RunningServer) -> None:
    """8 MB of arguments are counted like content: refused by their bytes alone ("at least"), never
    rendered and tokenized (seconds of a thread, and on the event loop before the fix)."""
    arguments = '{"text": "' + "a" * 8_000_000 + '"}'
    body = {"model": "llama3.2:1b", "messages": history_with_arguments(arguments), "max_tokens": 1}
    refused = httpx.post(f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=120)
    assert refused.status_code == 400, refused.text[:300]
    error = refused.json()["error"]
    assert error["code"] == "context_length_exceeded" and "at least" in error["message"]


def test_tools_are_sized_before_they_are_rendered(server: RunningServer) -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 2_000_000, "parameters": {}}}
    refused = chat(server, "hi", tools=[tool])
    assert refused.status_code == 400 and "at least" in refused.json()["error"]["message"]


def test_deeply_nested_arguments_are_a_400_not_a_500(server: RunningServer) -> None:
    for depth in (100, 5000):  # past our limit, and past Python's own recursion limit
        arguments = '{"a": ' * depth + "1" + "}" * depth
        body = {"model": "llama3.2:1b", "messages": history_with_arguments(arguments), "max_tokens": 1}
        refused = httpx.post(f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=60)
        assert refused.status_code == 400, refused.text[:300]
        assert "levels deep" in refused.json()["error"]["message"]
    nested = '{"a": ' * 40 + "1" + "}" * 40  # deep, but within the limit: served
    body = {"model": "llama3.2:1b", "messages": history_with_arguments(nested), "max_tokens": 1}
    assert httpx.post(f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=60).status_code == 200


def test_a_receipt_check_refuses_a_body_no_receipt_could_be(server: RunningServer) -> None:
    """9 MB bodies to POST /v1/receipts/verify were parsed in full; a receipt is a few KB."""
    huge = httpx.post(
        f"{server.v1}/receipts/verify",
        content=b'{"receipt": {"x": "' + b"a" * 9_000_000 + b'"}, "signature": "s"}',
        headers={**AUTH, "content-type": "application/json"},
        timeout=60,
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"
