"""Anthropic's event stream in-process, on a run the test drives: pings while nothing comes, the error event,
and a tool call split into blocks. No clock is read: a ping is awaited, not timed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from pinaivu_local.api.anthropic.serving import events
from pinaivu_local.api.flow.request import RunIdentity
from pinaivu_local.engine.generation import Delta, Usage
from pinaivu_local.errors import EngineFailure


class DrivenRun:
    """What events() reads of a Run, its deltas handed over by the test."""

    def __init__(self, tool_names: tuple[str, ...] = ()) -> None:
        self.tool_names = tool_names
        self.identity = RunIdentity("messages", "llama3.2:1b")
        self.request_id = self.identity.request_id
        self.prompt_tokens = 7
        self.signed = None
        self.queue: asyncio.Queue[Delta | Exception | None] = asyncio.Queue()
        self.ended: list[tuple[int, str | None]] = []

    async def deltas(self) -> AsyncIterator[Delta]:
        while (item := await self.queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item

    def end(self, status: int, finish: str | None = None, usage: Usage | None = None, error: str | None = None) -> None:
        self.ended.append((status, finish))

    async def recorded(self) -> None:
        return None


def parsed(chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs of one write."""
    out = []
    for block in chunk.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_a_quiet_stream_is_pinged_until_its_text_comes() -> None:
    async def scenario() -> list[str]:
        run = DrivenRun()
        stream = events(run, ping_interval_s=0.001)  # type: ignore[arg-type]
        names = [name for name, _ in parsed(await anext(stream))]
        assert names == ["message_start", "ping"]
        names += [name for name, _ in parsed(await anext(stream))]  # nothing came: a ping
        await run.queue.put(Delta("Hi"))
        while "content_block_delta" not in names:
            names += [name for name, _ in parsed(await anext(stream))]
        await run.queue.put(Delta("", finish_reason="stop", usage=Usage(7, 1)))
        await run.queue.put(None)  # the generation's end
        async for chunk in stream:
            names += [name for name, _ in parsed(chunk)]
        assert run.ended[0] == (200, "stop")
        return names

    names = asyncio.run(scenario())
    assert names[:3] == ["message_start", "ping", "ping"]  # the second write could only be a ping
    blocks = ["content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert [name for name in names[3:] if name != "ping"] == blocks


def test_a_failure_after_the_start_is_an_error_event() -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        run = DrivenRun()
        await run.queue.put(Delta("Hi"))
        await run.queue.put(EngineFailure("llama_decode failed"))
        out = [event async for chunk in events(run) for event in parsed(chunk)]  # type: ignore[arg-type]
        assert run.ended[0] == (500, None)
        return out

    out = asyncio.run(scenario())
    assert out[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "llama_decode failed"}})


def test_text_then_a_call_are_two_blocks() -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        run = DrivenRun(tool_names=("get_time",))
        for text in ["Let me check. ", '{"name": "get_time", ', '"parameters": {"tz": ', '"UTC"}}']:
            await run.queue.put(Delta(text))
        await run.queue.put(Delta("", finish_reason="stop", usage=Usage(7, 9, cached_tokens=4)))
        await run.queue.put(None)
        return [event async for chunk in events(run) for event in parsed(chunk)]  # type: ignore[arg-type]

    out = asyncio.run(scenario())
    starts = [data["content_block"] for name, data in out if name == "content_block_start"]
    assert [block["type"] for block in starts] == ["text", "tool_use"]
    assert starts[1]["name"] == "get_time" and starts[1]["id"].startswith("toolu_")
    pieces = [
        data["delta"]["partial_json"] for name, data in out if name == "content_block_delta" and data["index"] == 1
    ]
    assert json.loads("".join(pieces)) == {"tz": "UTC"}
    delta = next(data for name, data in out if name == "message_delta")
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {
        "input_tokens": 3,
        "output_tokens": 9,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 0,
    }
    assert [name for name, _ in out].count("content_block_stop") == 2 and out[-1][0] == "message_stop"
