"""The real-weights tier: SmolLM2-135M-Instruct behind a real `serve`, for what random weights cannot show.

Every test here asks at temperature 0 (greedy), so its answer is the same on every run and machine; the
prompts are ones this 135M model answers right (see docs/testing.md for what it gets wrong).
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.helpers import TEST_KEY, RunningServer

MODEL = "smollm2:135m"
# With SmolLM2's own default system prompt (what its template adds when none is given) this model
# answers "What is the capital of France?" in broken French; with a plain system prompt it answers right.
SYSTEM = "You are a helpful assistant."
QUESTION = "What is the capital of France?"
CAPITAL: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": QUESTION},
]
# Room for a sentence and its end of turn: an answer that runs out of it failed to end its turn.
ANSWER_TOKENS = 64


@pytest.fixture
def client(real_server: RunningServer) -> openai.OpenAI:
    """The real openai client on the real model's server."""
    return openai.OpenAI(base_url=real_server.v1, api_key=TEST_KEY, max_retries=0, timeout=120)


@pytest.fixture
def anthropic_client(real_server: RunningServer) -> anthropic.Anthropic:
    """The real anthropic client on the same server (its Messages route)."""
    return anthropic.Anthropic(base_url=real_server.base_url, api_key=TEST_KEY, max_retries=0, timeout=120)
