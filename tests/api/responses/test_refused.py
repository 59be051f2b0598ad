"""What the Responses API asks for and these models or this server cannot do is refused by name."""

from __future__ import annotations

from typing import Any

import openai
import pytest

REFUSED: list[tuple[str, Any, str]] = [
    ("tools", [{"type": "web_search"}], "web_search"),
    ("tools", [{"type": "file_search", "vector_store_ids": ["vs_1"]}], "file_search"),
    ("reasoning", {"effort": "low"}, "reasoning"),
    ("include", ["reasoning.encrypted_content"], "include"),
    ("background", True, "background"),
    ("conversation", "conv_1", "conversation"),
    ("truncation", "auto", "truncation"),
    ("tool_choice", {"type": "web_search"}, "web_search"),
    ("input", [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}], "images"),
    ("input", [{"type": "item_reference", "id": "msg_1"}], "item references"),
    ("temprature", 0.5, "extra fields"),  # a field we do not know, a typo included
]


def _detail(error: openai.UnprocessableEntityError) -> list[dict[str, Any]]:
    body = error.body
    assert isinstance(body, dict)
    return list(body["detail"] if "detail" in body else body["error"]["detail"])


@pytest.mark.parametrize(("field", "value", "named"), REFUSED)
def test_refused_by_name(client: openai.OpenAI, field: str, value: Any, named: str) -> None:
    body = {"model": "llama3.2:1b", "input": "hi", field: value}
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.post("/responses", body=body, cast_to=object)
    detail = _detail(refused.value)
    assert detail[0]["loc"][:2] == ["body", field]
    assert named in detail[0]["msg"]


def test_a_schema_with_tools_names_text_format(client: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="llama3.2:1b", input="hi", tools=tools, text={"format": {"type": "json_object"}})
    assert refused.value.param == "text.format"


def test_a_prompt_that_does_not_fit_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="llama3.2:1b", input="word " * 5000)
    assert refused.value.code == "context_length_exceeded"
