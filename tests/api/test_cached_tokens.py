"""usage.prompt_tokens_details.cached_tokens: the prompt tokens served from the prefix cache, as OpenAI reports them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import AUTH, NO_EOG, TEST_KEY, RunningServer, TinyModels, start_server, write_catalog


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """A context large enough that no test's cached cells are evicted to make room for another's."""
    workdir = tmp_path_factory.mktemp("cached")
    catalog = write_catalog(
        workdir / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 4096, "parallel": 4}}
    )
    running = start_server(workdir, "--models-file", str(catalog))
    yield running
    running.stop()


def system_prompt() -> str:
    """A long system prompt no other test sends, so nothing of it is cached before this test."""
    return f"{uuid.uuid4().hex} You are a careful assistant that answers in one short sentence."


def chat(client: openai.OpenAI, system: str, user: str, **extra: Any) -> Any:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return client.chat.completions.create(
        model="llama3.2:1b", messages=messages, max_tokens=4, temperature=0, extra_body={"logit_bias": NO_EOG}, **extra
    )


def streamed_usage(stream: Any) -> Any:
    return [chunk for chunk in stream if chunk.usage][-1].usage


def test_chat_whole_and_streamed_report_cached_tokens(client: openai.OpenAI) -> None:
    system = system_prompt()
    first = chat(client, system, "first question").usage
    assert first.prompt_tokens_details.cached_tokens == 0
    second = chat(client, system, "second question").usage
    cached = second.prompt_tokens_details.cached_tokens
    assert 50 < cached < second.prompt_tokens  # the system prompt came from the cache, the question did not
    stream = chat(client, system, "third question", stream=True, stream_options={"include_usage": True})
    assert streamed_usage(stream).prompt_tokens_details.cached_tokens == cached


def test_completions_whole_and_streamed_report_cached_tokens(client: openai.OpenAI) -> None:
    prefix = system_prompt()

    def complete(suffix: str, **extra: Any) -> Any:
        return client.completions.create(
            model="llama3.2:1b", prompt=prefix + suffix, max_tokens=3, temperature=0, **extra
        )

    assert complete(" x1").usage.prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
    whole = complete(" y2").usage.prompt_tokens_details.cached_tokens  # type: ignore[union-attr]
    assert whole > 50
    streamed = streamed_usage(complete(" z3", stream=True, stream_options={"include_usage": True}))
    assert streamed.prompt_tokens_details.cached_tokens == whole


def test_another_key_never_gets_cached_tokens(server: RunningServer, client: openai.OpenAI) -> None:
    """PINAIVU_PREFIX_CACHE_SHARING=key (the default): one key's prompt never speeds up another's."""
    prompt = system_prompt()
    created = httpx.post(f"{server.base_url}/admin/keys", json={"name": "other"}, headers=AUTH, timeout=10)
    other = openai.OpenAI(base_url=server.v1, api_key=created.json()["key"], max_retries=0)

    def cached(caller: openai.OpenAI, suffix: str) -> int:
        usage = caller.completions.create(model="llama3.2:1b", prompt=prompt + suffix, max_tokens=2).usage
        return usage.prompt_tokens_details.cached_tokens  # type: ignore[union-attr]

    assert cached(client, " x1") == 0
    assert cached(other, " y2") == 0
    assert cached(other, " z3") > 50  # its own cache serves it


def test_no_prompt_memory_reports_nothing_cached(
    server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path
) -> None:
    """PINAIVU_PROMPT_CACHE_MIB=0: no finished request's cells are kept, so a repeated prefix is computed again."""
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 4096}})
    running = server_factory("--models-file", str(catalog), env={"PINAIVU_PROMPT_CACHE_MIB": "0"})
    client = openai.OpenAI(base_url=running.v1, api_key=TEST_KEY, max_retries=0, timeout=60)
    system = system_prompt()
    assert [chat(client, system, q).usage.prompt_tokens_details.cached_tokens for q in ("one", "two")] == [0, 0]
