"""Body parsing into the 422 `detail` shape, without a server."""

from __future__ import annotations

import json

import pytest

from pinaivu_local.api.http.validation import parse_body
from pinaivu_local.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from pinaivu_local.errors import InvalidJSON, InvalidRequest, ValidationFailed


def test_valid_body() -> None:
    body = parse_body(
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": "x", "max_tokens": 3}',
        ChatCompletionRequest,
    )
    assert body.stop_strings() == ("x",) and body.token_limit() == 3


def test_max_completion_tokens_wins() -> None:
    body = parse_body(
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "max_completion_tokens": 9}',
        ChatCompletionRequest,
    )
    assert body.token_limit() == 9


def test_strings_are_not_numbers() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_body(b'{"model": "m", "prompt": "p", "temperature": "0.5"}', CompletionRequest)
    assert caught.value.detail == [
        {"loc": ["body", "temperature"], "msg": "value is not a valid float", "type": "type_error.float"}
    ]


@pytest.mark.parametrize("raw", [b"", b"   ", b"{", b"nul"])
def test_not_json(raw: bytes) -> None:
    with pytest.raises(InvalidJSON):
        parse_body(raw, ChatCompletionRequest)


@pytest.mark.parametrize(
    ("field", "value", "type_"),
    [
        ("echo", "true", "value_error.const"),
        ("suffix", '"x"', "value_error.const"),
        ("prompt", '["a", "b"]', "value_error.list.max_items"),
        ("prompt", "[[1], [2]]", "value_error.list.max_items"),
        ("prompt", "[1.5]", "type_error.str"),
        ("prompt", "[]", "type_error.str"),
    ],
)
def test_unsupported_completion_options(field: str, value: str, type_: str) -> None:
    raw = b'{"model": "m", "prompt": "p", "' + field.encode() + b'": ' + value.encode() + b"}"
    with pytest.raises(ValidationFailed) as caught:
        parse_body(raw, CompletionRequest)
    assert caught.value.detail[0]["loc"] == ["body", field] and caught.value.detail[0]["type"] == type_


@pytest.mark.parametrize(("raw", "expected"), [(b"[5, 6]", [5, 6]), (b"[[5, 6]]", [5, 6]), (b'["x"]', "x")])
def test_prompt_forms(raw: bytes, expected: object) -> None:
    assert parse_body(b'{"model": "m", "prompt": ' + raw + b"}", CompletionRequest).prompt == expected


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"temprature": 0.5}, "temprature"),  # a typo is not silently ignored
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),  # deprecated: use tools
        ({"function_call": {"name": "f"}}, "function_call"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ],
)
def test_fields_we_do_not_honour_are_refused_by_name(extra: dict[str, object], field: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(ValidationFailed) as refused:
        parse_body(json.dumps(body).encode(), ChatCompletionRequest)
    assert refused.value.detail[0]["loc"] == ["body", field]


@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {"type": "xml"}},
        {"tool_choice": "always"},
        {"tools": [{"type": "function", "function": {"name": "has space"}}]},
        {"tools": [{"type": "retrieval"}]},
    ],
)
def test_malformed_structure_fields_are_422_naming_them(extra: dict[str, object]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(ValidationFailed) as refused:
        parse_body(json.dumps(body).encode(), ChatCompletionRequest)
    assert refused.value.detail[0]["loc"][:2] == ["body", next(iter(extra))]


def test_fields_that_ask_for_nothing_are_accepted() -> None:
    """What clients send by default (and an assistant message sent back as the SDK returned it)."""
    assistant = {"role": "assistant", "content": "hi", "refusal": None, "annotations": [], "tool_calls": None}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}, assistant],
        "tools": [],
        "tool_choice": "none",
        "parallel_tool_calls": True,
        "response_format": {"type": "text"},
        "logprobs": False,
        "top_logprobs": 0,
    }
    parsed = parse_body(json.dumps(body).encode(), ChatCompletionRequest)
    assert parsed.messages[1].text() == "hi"


def test_top_logprobs_needs_logprobs() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}
    with pytest.raises(InvalidRequest) as refused:
        parse_body(json.dumps(body).encode(), ChatCompletionRequest).inference_request()
    assert refused.value.param == "top_logprobs"
    asked = parse_body(json.dumps({**body, "logprobs": True}).encode(), ChatCompletionRequest)
    assert asked.inference_request().sampling.logprobs == 2


def test_completion_logprobs_over_five_and_best_of_are_refused() -> None:
    for extra, field in (({"logprobs": 6}, "logprobs"), ({"best_of": 3}, "best_of")):
        body = {"model": "m", "prompt": "x", **extra}
        with pytest.raises(ValidationFailed) as refused:
            parse_body(json.dumps(body).encode(), CompletionRequest)
        assert refused.value.detail[0]["loc"] == ["body", field]
