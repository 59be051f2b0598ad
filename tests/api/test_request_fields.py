"""Every field of OpenAI's create() is honoured, accepted as changing nothing, or refused by name."""

from __future__ import annotations

from typing import Any

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Say hello"}]

REFUSED_CHAT = [
    ("n", 2),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("modalities", ["text", "audio"]),
    ("prediction", {"type": "content", "content": "hello"}),
    ("web_search_options", {}),
    ("reasoning_effort", "low"),
    ("verbosity", "low"),
    ("moderation", {"model": "omni-moderation-latest"}),
    ("temprature", 0.5),  # a field we do not know, a typo included
]
REFUSED_TEXT = [("n", 2), ("echo", True), ("suffix", "end"), ("best_of", 2), ("logprobs", 6)]
ACCEPTED_CHAT = [
    ("user", "u-1"),
    ("metadata", {"team": "search"}),
    ("store", True),
    ("service_tier", "auto"),
    ("prompt_cache_key", "k"),
    ("prompt_cache_options", {"mode": "implicit"}),
    ("prompt_cache_retention", "24h"),
    ("safety_identifier", "s-1"),
    ("modalities", ["text"]),
    ("n", 1),
]


def _detail(error: openai.UnprocessableEntityError) -> list[dict[str, Any]]:
    body = error.body
    assert isinstance(body, dict)
    return body["detail"] if "detail" in body else body["error"]["detail"]


@pytest.mark.parametrize(("field", "value"), REFUSED_CHAT)
def test_chat_fields_we_cannot_honour_are_refused_by_name(client: openai.OpenAI, field: str, value: object) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.chat.completions.create(model="llama3.2:1b", messages=MESSAGES, extra_body={field: value})  # type: ignore[arg-type]
    assert [e["loc"] for e in _detail(refused.value)] == [["body", field]]


@pytest.mark.parametrize(("field", "value"), REFUSED_TEXT)
def test_completion_fields_we_cannot_honour_are_refused_by_name(
    client: openai.OpenAI, field: str, value: object
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.completions.create(model="llama3.2:1b", prompt="hi", extra_body={field: value})
    assert [e["loc"] for e in _detail(refused.value)] == [["body", field]]


@pytest.mark.parametrize(("field", "value"), ACCEPTED_CHAT)
def test_fields_that_cannot_change_the_output_are_accepted(client: openai.OpenAI, field: str, value: object) -> None:
    out = client.chat.completions.create(
        model="llama3.2:1b",
        messages=MESSAGES,
        max_tokens=2,
        extra_body={field: value},  # type: ignore[arg-type]
    )
    assert out.choices[0].finish_reason in ("stop", "length")


def test_stream_obfuscation_is_accepted(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="llama3.2:1b",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=2,
        stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
    )
    assert list(stream)[-1].usage is not None
