"""Chat completions from a real model through the openai SDK: a right answer, its end of turn, tools, JSON."""

from __future__ import annotations

import json
import math

import openai
from pydantic import BaseModel

from tests.realtext.conftest import ANSWER_TOKENS, CAPITAL, MODEL


class Capital(BaseModel):
    city: str
    country: str


WEATHER_TOOL: openai.types.chat.ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_a_right_answer_ending_its_turn(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model=MODEL, messages=CAPITAL, temperature=0, max_tokens=ANSWER_TOKENS)
    content = out.choices[0].message.content or ""
    assert "Paris" in content
    # The model ended its turn on <|im_end|> well inside the budget, and no template markup leaked.
    assert out.choices[0].finish_reason == "stop" and out.usage is not None
    assert out.usage.completion_tokens < ANSWER_TOKENS
    assert "<|im_" not in content and "<|endoftext|>" not in content


def test_a_stream_says_what_the_whole_answer_says(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=CAPITAL, temperature=0, max_tokens=ANSWER_TOKENS)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=CAPITAL, temperature=0, max_tokens=ANSWER_TOKENS, stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content and "Paris" in streamed
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_a_forced_tool_call_names_the_city_asked_about(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather like in Tokyo today?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
    )
    assert out.choices[0].finish_reason == "tool_calls"
    (call,) = out.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}


def test_a_json_schema_answer_parses_and_is_right(client: openai.OpenAI) -> None:
    out = client.chat.completions.parse(
        model=MODEL,
        messages=[
            {"role": "user", "content": "What is the capital of France? Answer in JSON with the city and its country."}
        ],
        response_format=Capital,
        temperature=0,
    )
    assert out.choices[0].finish_reason == "stop"
    parsed = out.choices[0].message.parsed
    assert isinstance(parsed, Capital) and parsed.city == "Paris" and parsed.country.lower() == "france"


def test_related_sentences_embed_closer_than_unrelated_ones(client: openai.OpenAI) -> None:
    # A chat model serves embeddings by mean pooling its last hidden states.
    cat, kitten, markets = (
        d.embedding
        for d in client.embeddings.create(
            model=MODEL,
            input=["The cat sat on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."],
        ).data
    )
    assert cosine(cat, kitten) > cosine(cat, markets) and cosine(cat, kitten) > cosine(kitten, markets)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
