"""Anthropic's Messages API with the real anthropic SDK over real HTTP, on random-weight test models.

The tiny models write nonsense, so every valid tool_use here is the constraint's doing; text answers
are greedy (temperature 0), so each is the same on every run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from tests.helpers import AUTH, TEST_KEY, RunningServer, TinyModels, start_tool_server

WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}
CLOCK: Any = {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}
HELLO: list[Any] = [{"role": "user", "content": "Hello there"}]
# This SDK's create() has no temperature (newer Anthropic models fix it); the API still takes it.
ZERO = {"temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """Both ids on the tiny models, with room for tools (start_tool_server)."""
    workdir = tmp_path_factory.mktemp("anthropic-server")
    running = start_tool_server(workdir, tiny_models)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> anthropic.Anthropic:
    """The SDK as agents use it: base URL without /v1, the key in x-api-key."""
    return anthropic.Anthropic(base_url=server.base_url, api_key=TEST_KEY, max_retries=0)


def test_create_answers_a_message(client: anthropic.Anthropic, server: RunningServer) -> None:
    raw = client.messages.with_raw_response.create(
        model="llama3.2:1b", max_tokens=8, messages=HELLO, system="Be brief.", extra_body=ZERO
    )
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "llama3.2:1b"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text  # type: ignore[union-attr]
    assert message.stop_reason in ("end_turn", "max_tokens")
    usage = message.usage
    assert usage.output_tokens > 0 and usage.input_tokens > 0
    assert usage.cache_read_input_tokens is not None and usage.cache_creation_input_tokens == 0
    request_id = raw.headers["request-id"]
    assert request_id == message.model_extra["request_id"] == raw.headers["x-request-id"]  # type: ignore[index]
    assert request_id.startswith("req_")
    assert json.loads(raw.headers["x-pinaivu-receipt"])["receipt"]["request_id"] == request_id

    # The same again: greedy, the same text; most of the prompt now comes from the prefix cache.
    again = client.messages.create(
        model="llama3.2:1b", max_tokens=8, messages=HELLO, system="Be brief.", extra_body=ZERO
    )
    assert again.content[0].text == message.content[0].text  # type: ignore[union-attr]
    cached = again.usage.cache_read_input_tokens or 0
    assert cached > 0 and again.usage.input_tokens + cached == usage.input_tokens + (usage.cache_read_input_tokens or 0)


def test_stream_text_with_the_sdk_helpers(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model="llama3.2:1b", max_tokens=10, messages=HELLO, extra_body=ZERO)
    with client.messages.stream(model="llama3.2:1b", max_tokens=10, messages=HELLO, extra_body=ZERO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) == whole.usage.input_tokens + (
        whole.usage.cache_read_input_tokens or 0
    )


def test_stream_events_in_anthropic_order(server: RunningServer) -> None:
    body = {"model": "llama3.2:1b", "max_tokens": 6, "messages": HELLO, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{server.v1}/messages", headers={"x-api-key": TEST_KEY}, json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    datas = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert [d["type"] for d in datas] == names
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert datas[-1]["pinaivu_receipt"]["receipt"]["request_id"] == datas[0]["message"]["request_id"]


def test_streamed_tool_use_is_assembled_by_the_sdk(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="llama3.2:1b",
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "any"},
    ) as stream:
        deltas = [e for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = stream.get_final_message()
    assert deltas  # the input came in pieces
    assert final.stop_reason == "tool_use"
    call = final.content[-1]
    assert call.type == "tool_use" and call.id.startswith("toolu_") and call.name in ("get_weather", "get_time")
    assert isinstance(call.input, dict)
    if call.name == "get_weather":
        jsonschema.validate(call.input, WEATHER["input_schema"])


def test_forced_tool_then_its_result_round_trip(client: anthropic.Anthropic) -> None:
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(
        model="llama3.2:1b",
        max_tokens=200,
        messages=question,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather"
    jsonschema.validate(call.input, WEATHER["input_schema"])
    history: list[Any] = [
        *question,
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees, sunny"},
                {"type": "text", "text": "And tomorrow?", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "system", "content": "Answer in one word."},  # as agents send reminders between turns
    ]
    second = client.messages.create(
        model="llama3.2:1b", max_tokens=8, messages=history, tools=[WEATHER], tool_choice={"type": "none"}
    )
    assert second.stop_reason in ("end_turn", "max_tokens") and second.content[0].type == "text"
    errored: list[Any] = [
        {
            **history[-2],
            "content": [{**history[-2]["content"][0], "is_error": True, "content": [{"type": "text", "text": "no"}]}],
        }
    ]
    third = client.messages.create(model="llama3.2:1b", max_tokens=4, messages=[*history[:-2], *errored])
    assert third.usage.output_tokens > 0


def test_count_tokens_is_what_the_message_costs(client: anthropic.Anthropic) -> None:
    tools: list[Any] = [WEATHER]
    counted = client.messages.count_tokens(model="llama3.2:1b", messages=HELLO, system="Be brief.", tools=tools)
    sent = client.messages.create(
        model="llama3.2:1b", max_tokens=1, messages=HELLO, system="Be brief.", tools=tools, extra_body=ZERO
    )
    assert counted.input_tokens == sent.usage.input_tokens + (sent.usage.cache_read_input_tokens or 0)
    plain = client.messages.count_tokens(model="llama3.2:1b", messages=HELLO)
    assert 0 < plain.input_tokens < counted.input_tokens  # the tools and the system prompt count


def test_a_billing_line_costs_no_cached_prefix(client: anthropic.Anthropic) -> None:
    """Claude Code's per-request first system block is not part of the prompt: the rest stays cached."""
    rules = "You answer questions about the weather. " * 20

    def ask(cch: str) -> anthropic.types.Message:
        system: Any = [
            {
                "type": "text",
                "text": f"x-anthropic-billing-header: cc_version=2.1.37.0d9; cc_entrypoint=cli; cch={cch};",
            },
            {"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}},
        ]
        return client.messages.create(model="llama3.2:3b", max_tokens=1, messages=HELLO, system=system)

    first, second = ask("fa690"), ask("0aaa9")
    prompt = first.usage.input_tokens + (first.usage.cache_read_input_tokens or 0)
    assert (second.usage.cache_read_input_tokens or 0) >= prompt - 2  # all but the last token or so
    counted = client.messages.count_tokens(model="llama3.2:3b", messages=HELLO, system=rules)
    assert counted.input_tokens == prompt


def test_stop_sequence_is_reported(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model="llama3.2:1b", max_tokens=12, messages=HELLO, extra_body=ZERO)
    text = "".join(b.text for b in whole.content if b.type == "text")
    stop = text[1:4]  # the greedy answer's own text, so it is hit; the answer ends before it
    cut = client.messages.create(
        model="llama3.2:1b", max_tokens=12, messages=HELLO, extra_body=ZERO, stop_sequences=["never written", stop]
    )
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert "".join(b.text for b in cut.content if b.type == "text") == text[: text.index(stop)]


def test_authentication_errors(server: RunningServer) -> None:
    body = {"model": "llama3.2:1b", "max_tokens": 1, "messages": HELLO}
    missing = httpx.post(f"{server.v1}/messages", json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert "x-api-key: sk-pnv-" in missing.json()["error"]["message"]
    wrong = anthropic.Anthropic(base_url=server.base_url, api_key="sk-pnv-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model="llama3.2:1b", max_tokens=1, messages=HELLO)
    error: Any = caught.value.body
    assert set(error) == {"type", "error"} and error["type"] == "error"
    assert error["error"]["type"] == "authentication_error" and "Incorrect API key" in error["error"]["message"]
    foreign = httpx.post(f"{server.v1}/messages", headers={"x-api-key": "sk-ant-api03-abc"}, json=body)
    assert foreign.status_code == 401 and "must start with `sk-pnv-`" in foreign.json()["error"]["message"]
    # Authorization: Bearer works on these routes too (what an OpenAI-style client sends).
    assert httpx.post(f"{server.v1}/messages", headers=AUTH, json=body).status_code == 200


def test_permission_and_unknown_model(server: RunningServer, client: anthropic.Anthropic) -> None:
    created = httpx.post(
        f"{server.base_url}/admin/keys", headers=AUTH, json={"name": "small", "models": ["llama3.2:1b"]}
    )
    limited = anthropic.Anthropic(base_url=server.base_url, api_key=created.json()["key"], max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        limited.messages.create(model="llama3.2:3b", max_tokens=1, messages=HELLO)
    assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="llama3.2:7b", max_tokens=1, messages=HELLO)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "llama3.2:1b" in missing.value.message


def test_rate_limit_error_with_retry_after(server: RunningServer) -> None:
    created = httpx.post(f"{server.base_url}/admin/keys", headers=AUTH, json={"name": "slow", "rpm": 1})
    key = created.json()["key"]
    limited = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
    limited.messages.count_tokens(model="llama3.2:1b", messages=HELLO)  # the minute's one request
    with pytest.raises(anthropic.RateLimitError) as caught:
        limited.messages.create(model="llama3.2:1b", max_tokens=1, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(caught.value.response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "image blocks"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
        ({"tool_choice": {"type": "any"}}, "no tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "send_email"}}, "send_email"),
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]}, "user"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        # A block's type that is no string (the fuzzer's find: a 500 before)
        ({"messages": [{"role": "user", "content": [{"type": {}, "text": "x"}]}]}, "messages.0.content.0"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": {}, "text": ""}]}],
                    }
                ]
            },
            "messages.0.content.0",
        ),
        ({"tools": [{"type": [], "name": "x", "input_schema": {"type": "object"}}]}, "tools.0"),
    ],
)
def test_bad_requests_are_invalid_request_errors_naming_the_field(
    server: RunningServer, body: dict[str, Any], needle: str
) -> None:
    full = {"model": "llama3.2:1b", "max_tokens": 4, "messages": HELLO, **body}
    response = httpx.post(
        f"{server.v1}/messages", headers={"x-api-key": TEST_KEY, "anthropic-version": "2023-06-01"}, json=full
    )
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert needle in error["error"]["message"]


def test_the_sdk_raises_bad_request_for_a_refused_block(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="llama3.2:1b",
            max_tokens=4,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
                    ],
                }
            ],
        )
    assert "document blocks" in caught.value.message


def test_the_request_is_recorded_with_its_receipt_and_verifies(
    client: anthropic.Anthropic, server: RunningServer
) -> None:
    system = "Be brief."
    message = client.messages.create(model="llama3.2:1b", max_tokens=8, messages=HELLO, system=system, extra_body=ZERO)
    request_id = message.model_extra["request_id"]  # type: ignore[index]
    record = httpx.get(f"{server.v1}/requests/{request_id}", headers=AUTH).json()
    assert record["kind"] == "messages" and record["status"] == 200
    assert record["receipt"] == message.model_extra["pinaivu_receipt"]  # type: ignore[index]
    text = message.content[0].text  # type: ignore[union-attr]
    verdict = httpx.post(
        f"{server.v1}/requests/{request_id}/verify",
        headers=AUTH,
        json={"system": system, "messages": HELLO, "output": text},
    ).json()
    assert verdict["verified"] is True and verdict["input_matches"] and verdict["output_matches"]
    assert verdict["replay"]["performed"] is True and verdict["replay"]["reproduced"] is True
    wrong = httpx.post(
        f"{server.v1}/requests/{request_id}/verify", headers=AUTH, json={"messages": HELLO, "output": text}
    ).json()
    assert wrong["input_matches"] is False  # the system prompt is part of the commitment
