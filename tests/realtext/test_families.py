"""The Anthropic Messages and OpenAI Responses routes render the same conversation as chat: the same greedy text."""

from __future__ import annotations

import anthropic
import openai

from tests.realtext.conftest import ANSWER_TOKENS, CAPITAL, MODEL, QUESTION, SYSTEM


def chat_answer(client: openai.OpenAI) -> str:
    out = client.chat.completions.create(model=MODEL, messages=CAPITAL, temperature=0, max_tokens=ANSWER_TOKENS)
    assert out.choices[0].finish_reason == "stop" and "Paris" in (out.choices[0].message.content or "")
    return out.choices[0].message.content or ""


def test_anthropic_messages_answer_as_chat_does(client: openai.OpenAI, anthropic_client: anthropic.Anthropic) -> None:
    # The anthropic SDK (2.x) has no temperature argument; the route takes it, as Anthropic's API does.
    message = anthropic_client.messages.create(
        model=MODEL,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=ANSWER_TOKENS,
        extra_body={"temperature": 0},
    )
    assert message.stop_reason == "end_turn"
    assert [block.text for block in message.content if block.type == "text"] == [chat_answer(client)]


def test_responses_answer_as_chat_does(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, instructions=SYSTEM, input=QUESTION, temperature=0, max_output_tokens=ANSWER_TOKENS
    )
    assert response.status == "completed"
    assert response.output_text == chat_answer(client)
