"""pydantic-ai: an Agent on an OpenAI-compatible provider pointed at the server, with an output model and a tool."""

from __future__ import annotations

import pytest
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.compat.conftest import LOOP_TOKENS, MODEL, TRIES
from tests.compat.models import Event, Person
from tests.helpers import TEST_KEY, RunningServer


def model(server: RunningServer) -> OpenAIChatModel:
    return OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=server.v1, api_key=TEST_KEY))


@pytest.mark.parametrize("output", [Person, Event])
def test_an_output_model(server: RunningServer, output: type[Person] | type[Event]) -> None:
    agent = Agent(model(server), output_type=output)
    for _ in range(TRIES):
        assert isinstance(agent.run_sync("Fill it in.").output, output)


def test_a_tool_then_text(server: RunningServer) -> None:
    agent = Agent(model(server), model_settings={"max_tokens": LOOP_TOKENS})
    calls: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "4 C"

    result = agent.run_sync("What is the weather in Oslo?")
    assert len(calls) == 1 and isinstance(result.output, str)
