"""LangChain's ChatOpenAI on the real model: structured output that is right, not only valid."""

from __future__ import annotations

import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.helpers import TEST_KEY, RunningServer
from tests.realtext.conftest import MODEL


class Capital(BaseModel):
    city: str
    country: str


def test_with_structured_output(real_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
        monkeypatch.setenv(name, "false")
    llm = ChatOpenAI(model=MODEL, base_url=real_server.v1, api_key=TEST_KEY, temperature=0, max_retries=0)
    answer = llm.with_structured_output(Capital, method="json_schema").invoke(
        "What is the capital of France? Answer in JSON with the city and its country."
    )
    assert isinstance(answer, Capital) and answer.city == "Paris" and answer.country.lower() == "france"
