"""Body parsing into the 422 `detail` shape, without a server."""

from __future__ import annotations

import pytest

from pinaivu_local.api.schemas import ChatCompletionRequest, CompletionRequest
from pinaivu_local.api.validation import parse_body
from pinaivu_local.errors import InvalidJSON, ValidationFailed


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
