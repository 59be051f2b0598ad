"""The openai-agents SDK: an Agent with a function tool, run by the Runner to its answer, on chat
completions and on the Responses API (the SDK's default model)."""

from __future__ import annotations

import openai
import pytest
from agents import (
    Agent,
    Model,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

from tests.compat.conftest import LOOP_TOKENS, MODEL


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
def test_a_tool_round_trip(api: str) -> None:
    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "4 C"

    client = openai.AsyncOpenAI(max_retries=0)
    model: Model = (
        OpenAIResponsesModel(model=MODEL, openai_client=client)
        if api == "responses"
        else OpenAIChatCompletionsModel(model=MODEL, openai_client=client)
    )
    agent = Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=model,
        model_settings=ModelSettings(max_tokens=LOOP_TOKENS),
    )
    result = Runner.run_sync(agent, "What is the weather in Oslo?", max_turns=4)
    assert len(calls) == 1 and isinstance(result.final_output, str) and result.final_output
    if api == "responses":  # every turn went through /v1/responses, the call's output sent back as an item
        sent = [item for response in result.raw_responses for item in response.output]
        assert [item.type for item in sent] == ["function_call", "message"]
