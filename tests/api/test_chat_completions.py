"""POST /v1/chat/completions over real HTTP with the real openai client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import openai

from pinaivu_local.tiny_models.writer import write_tiny_model
from tests.helpers import AUTH, NO_EOG, TEST_KEY, RunningServer, write_catalog

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]


def test_non_streaming_shape_usage_and_request_id(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2:1b", messages=MESSAGES, max_tokens=8, temperature=0
    )
    completion = raw.parse()
    body = json.loads(raw.text)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "llama3.2:1b"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 10  # the chat template framing counts
    assert 0 < completion.usage.completion_tokens <= 8
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert body["request_id"].startswith("req_") and len(body["request_id"]) == 36
    assert raw.headers["x-request-id"] == body["request_id"]


def test_length_finish_uses_the_whole_budget(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="llama3.2:1b", messages=MESSAGES, max_completion_tokens=5, temperature=0, logit_bias=NO_EOG
    )
    # end-of-generation tokens are banned, so only the budget can end it
    assert out.choices[0].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 5


def test_greedy_is_deterministic(client: openai.OpenAI) -> None:
    runs = [
        client.chat.completions.create(model="llama3.2:3b", messages=MESSAGES, max_tokens=12, temperature=0)
        for _ in range(2)
    ]
    assert runs[0].choices[0].message.content == runs[1].choices[0].message.content


def test_seed_reproduces_sampling(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str | None:
        out = client.chat.completions.create(
            model="llama3.2:1b", messages=MESSAGES, max_tokens=16, temperature=1.5, seed=seed, logit_bias=NO_EOG
        )
        return out.choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(s) for s in range(1, 5)}) > 1


def test_streaming_chunks_usage_and_done(server: RunningServer) -> None:
    body = {
        "model": "llama3.2:1b",
        "messages": MESSAGES,
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": NO_EOG,
    }
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        request_id = response.headers["x-request-id"]
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(c["request_id"] == request_id for c in chunks)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 6
    assert all(c["usage"] is None for c in chunks[:-1])
    finish = [c["choices"][0]["finish_reason"] for c in chunks[:-1]]
    assert finish[-1] == "length" and all(f is None for f in finish[:-1])


def test_streaming_text_equals_non_streaming_text(client: openai.OpenAI) -> None:
    kwargs = {"model": "llama3.2:3b", "messages": MESSAGES, "max_tokens": 20, "temperature": 0}
    whole = client.chat.completions.create(**kwargs).choices[0].message.content  # type: ignore[call-overload]
    stream = client.chat.completions.create(stream=True, **kwargs)  # type: ignore[call-overload]
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == whole


def test_stream_without_include_usage_has_no_usage_key(server: RunningServer) -> None:
    body = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=60) as response:
        events = [line for line in response.iter_lines() if line]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks and all("usage" not in c for c in chunks)


def test_stop_string_is_never_emitted(client: openai.OpenAI) -> None:
    base = client.chat.completions.create(
        model="llama3.2:1b", messages=MESSAGES, max_tokens=30, temperature=0, logit_bias=NO_EOG
    )
    text = base.choices[0].message.content or ""
    assert len(text) > 6, text
    stop = text[3:6]
    cut = client.chat.completions.create(
        model="llama3.2:1b", messages=MESSAGES, max_tokens=30, temperature=0, logit_bias=NO_EOG, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]
    streamed = client.chat.completions.create(
        model="llama3.2:1b",
        messages=MESSAGES,
        max_tokens=30,
        temperature=0,
        logit_bias=NO_EOG,
        stop=stop,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text[: text.index(stop)]


def test_text_content_parts_are_accepted(client: openai.OpenAI) -> None:
    as_parts = client.chat.completions.create(
        model="llama3.2:1b",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hello"}]}],
        max_tokens=6,
        temperature=0,
    )
    as_text = client.chat.completions.create(
        model="llama3.2:1b", messages=[{"role": "user", "content": "Say hello"}], max_tokens=6, temperature=0
    )
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content
    assert as_parts.usage and as_text.usage
    # the same tokens (the second one found them in the prefix cache)
    assert as_parts.usage.prompt_tokens == as_text.usage.prompt_tokens
    assert as_parts.usage.completion_tokens == as_text.usage.completion_tokens


def test_concurrent_requests_to_both_models(server: RunningServer) -> None:
    async def run() -> list[openai.types.chat.ChatCompletion]:
        aclient = openai.AsyncOpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0, timeout=120)
        calls = [
            aclient.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"request {i}"}], max_tokens=10 + i, temperature=0
            )
            for i in range(8)
            for model in ("llama3.2:1b", "llama3.2:3b")
        ]
        try:
            return await asyncio.gather(*calls)
        finally:
            await aclient.close()

    results = asyncio.run(run())
    assert len(results) == 16
    assert len({r.id for r in results}) == 16
    for i, r in enumerate(results):
        assert r.usage is not None and 0 < r.usage.completion_tokens <= 10 + i // 2
        assert r.model == ("llama3.2:1b", "llama3.2:3b")[i % 2]


def test_sixteen_concurrent_streams_across_both_models(server: RunningServer) -> None:
    async def one(aclient: openai.AsyncOpenAI, i: int) -> tuple[str, int, int]:
        stream = await aclient.chat.completions.create(
            model=("llama3.2:1b", "llama3.2:3b")[i % 2],
            messages=[{"role": "user", "content": f"stream {i}"}],
            max_tokens=4 + i,
            stream=True,
            stream_options={"include_usage": True},
            logit_bias=NO_EOG,
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        assert usage is not None
        return text, usage.completion_tokens, usage.prompt_tokens

    async def run() -> list[tuple[str, int, int]]:
        aclient = openai.AsyncOpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0, timeout=120)
        try:
            return await asyncio.gather(*[one(aclient, i) for i in range(16)])
        finally:
            await aclient.close()

    results = asyncio.run(run())
    assert [completion for _, completion, _ in results] == [4 + i for i in range(16)]
    assert all(prompt > 0 for _, _, prompt in results)


def test_batched_greedy_matches_alone(client: openai.OpenAI, server: RunningServer) -> None:
    messages = [{"role": "user", "content": "request 3"}]
    alone = client.chat.completions.create(model="llama3.2:1b", messages=messages, max_tokens=13, temperature=0)

    async def crowd() -> list[openai.types.chat.ChatCompletion]:
        aclient = openai.AsyncOpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0, timeout=120)
        try:
            return await asyncio.gather(
                *[
                    aclient.chat.completions.create(
                        model="llama3.2:1b",
                        messages=[{"role": "user", "content": f"request {i}" * (i + 1)}] if i != 3 else messages,
                        max_tokens=13 if i == 3 else 5 + 3 * i,
                        temperature=0,
                    )
                    for i in range(8)
                ]
            )
        finally:
            await aclient.close()

    assert asyncio.run(crowd())[3].choices[0].message.content == alone.choices[0].message.content


def test_a_gguf_without_a_chat_template_chats_in_its_own_familys_markup(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """llama.cpp's built-in template for its markup (Llama 3's here), said once in the log at load."""
    model = write_tiny_model(tmp_path / "no-template.gguf", chat_template=None)
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(model), "n_ctx": 512}})
    srv = server_factory("--models-file", str(catalog))
    client = openai.OpenAI(base_url=srv.v1, api_key=TEST_KEY, max_retries=0, timeout=60)
    out = client.chat.completions.create(model="llama3.2:1b", messages=MESSAGES, max_tokens=2, temperature=0)
    assert out.usage is not None and out.usage.prompt_tokens > 10
    assert "using llama.cpp's built-in 'llama3'" in srv.log()
