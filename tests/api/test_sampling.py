"""Every sampling parameter the API accepts, sent with a non-default value through the real server."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.helpers import AUTH, NO_EOG, RunningServer

MESSAGES = [{"role": "user", "content": "repeat"}]


def complete(client: openai.OpenAI, prompt: str, **params: Any) -> str:
    """Greedy text completion of 24 tokens (end-of-generation banned), streamed or whole."""
    args: dict[str, Any] = {"model": "llama3.2:1b", "prompt": prompt, "max_tokens": 24, "temperature": 0}
    args.update(params)
    args["logit_bias"] = {**NO_EOG, **args.get("logit_bias", {})}
    if args.get("stream"):
        return "".join(chunk.choices[0].text for chunk in client.completions.create(**args) if chunk.choices)
    out = client.completions.create(**args)
    assert out.usage is not None and out.usage.completion_tokens == 24
    return out.choices[0].text


def first_divergence(a: str, b: str) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


@pytest.mark.parametrize("stream", [False, True])
def test_frequency_penalty_stops_a_repeated_token_from_repeating(client: openai.OpenAI, stream: bool) -> None:
    plain = complete(client, "repeat", stream=stream)
    assert plain == "P" * 24  # greedy on this tiny model loops on one token
    penalised = complete(client, "repeat", frequency_penalty=2.0, stream=stream)
    # Each repetition costs 2 more: the loop gives way after a few, and gives way again and again.
    assert penalised.startswith("PPP") and penalised.count("P") < 10
    assert len(set(penalised)) >= 4


@pytest.mark.parametrize("stream", [False, True])
def test_presence_penalty_acts_on_tokens_already_present(client: openai.OpenAI, stream: bool) -> None:
    for prompt in ("abc", "Count to five"):
        plain = complete(client, prompt, stream=stream)
        penalised = complete(client, prompt, presence_penalty=2.0, stream=stream)
        assert penalised != plain
        at = first_divergence(plain, penalised)
        # Greedy would have repeated something it had already written; the flat penalty moved it off.
        assert plain[at] in plain[:at]


def test_presence_penalty_is_flat_where_frequency_is_not(client: openai.OpenAI) -> None:
    """The same 2.0 as a presence penalty cannot outweigh a strong loop that a frequency penalty breaks."""
    assert complete(client, "repeat", presence_penalty=2.0) == "P" * 24
    assert complete(client, "repeat", frequency_penalty=2.0) != "P" * 24


def test_negative_penalties_are_served(client: openai.OpenAI) -> None:
    assert complete(client, "repeat", presence_penalty=-2.0, frequency_penalty=-2.0) == "P" * 24


def test_penalties_in_chat_whole_and_streamed(client: openai.OpenAI) -> None:
    base: dict[str, Any] = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 24, "temperature": 0}
    plain = client.chat.completions.create(**base, logit_bias=NO_EOG).choices[0].message.content
    whole = client.chat.completions.create(**base, logit_bias=NO_EOG, frequency_penalty=2.0)
    streamed = client.chat.completions.create(**base, logit_bias=NO_EOG, frequency_penalty=2.0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert whole.choices[0].message.content == text != plain


def test_tiny_top_p_keeps_only_the_likeliest_token(client: openai.OpenAI) -> None:
    """top_p keeps the smallest set reaching p: near 0 that is one token, so any seed gives the greedy text."""
    greedy = complete(client, "hello")
    assert complete(client, "hello", temperature=1.5, top_p=1e-6, seed=1) == greedy
    assert complete(client, "hello", temperature=1.5, top_p=1e-6, seed=2) == greedy


def test_temperature_and_seed_change_the_draw(client: openai.OpenAI) -> None:
    draws = {complete(client, "hello", temperature=2.0, seed=seed) for seed in range(4)}
    assert len(draws) > 1


# One non-default value of every sampling field the API accepts, each in a whole and a streamed request.
EVERY_FIELD: list[tuple[str, Any]] = [
    ("temperature", 0.7),
    ("top_p", 0.5),
    ("seed", 123456789),
    ("max_tokens", 3),
    ("max_completion_tokens", 3),
    ("stop", ["\n\n\n"]),
    ("presence_penalty", 0.5),
    ("presence_penalty", -0.5),
    ("frequency_penalty", 0.5),
    ("frequency_penalty", -0.5),
    ("logit_bias", {"80": 3.5}),
    ("ignore_eos", True),
    ("n", 1),
    ("user", "someone"),
]
CASES = [(f, v, s) for f, v in EVERY_FIELD for s in (False, True)] + [("stream_options", {"include_usage": True}, True)]


@pytest.mark.parametrize(("field", "value", "stream"), CASES, ids=[f"{f}={v}-stream={s}" for f, v, s in CASES])
def test_every_sampling_field_is_served(server: RunningServer, field: str, value: Any, stream: bool) -> None:
    body: dict[str, Any] = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 4, "stream": stream}
    body[field] = value
    response = httpx.post(f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    if stream:
        assert response.text.rstrip().endswith("data: [DONE]") and '"error"' not in response.text
    else:
        assert response.json()["usage"]["completion_tokens"] >= 1
    health = httpx.get(f"{server.base_url}/health", timeout=10).json()
    assert {m["id"]: m["state"] for m in health["models"]}["llama3.2:1b"] == "ready"
