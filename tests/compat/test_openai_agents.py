"""The openai-agents SDK on chat completions: an Agent with a function tool, run by the Runner to its answer."""

from __future__ import annotations

import openai
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

from tests.compat.conftest import LOOP_TOKENS, MODEL


def test_a_tool_round_trip() -> None:
    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "4 C"

    agent = Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=OpenAIChatCompletionsModel(model=MODEL, openai_client=openai.AsyncOpenAI(max_retries=0)),
        model_settings=ModelSettings(max_tokens=LOOP_TOKENS),
    )
    result = Runner.run_sync(agent, "What is the weather in Oslo?", max_turns=4)
    assert len(calls) == 1 and isinstance(result.final_output, str)
