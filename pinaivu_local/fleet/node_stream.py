"""A node's SSE stream read within bounds: what a node sends is never trusted to be small or to end.

Every bound is in proportion to what the request may cost (its completion budget), so a node that
streams without end, sends one endless line, or keeps a request alive with SSE comments costs the
gateway at most a few MB and a known time, and is counted against (NodeDropped).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from pinaivu_local.fleet.state import ErrorClass

# The longest line (and event) a node may send: a chunk with many tokens' logprobs stays well under it.
MAX_LINE_BYTES = 1024 * 1024
# What a stream may carry beyond its tokens (the role chunk, the finish and usage chunks, the receipt).
BASE_BYTES = 1024 * 1024
EXTRA_EVENTS = 64
# What one token of the budget may bring on the wire at most: its text, its logprobs, JSON around them.
BYTES_PER_TOKEN = 8 * 1024
# The longest text of one token in any vocabulary we know (runs of spaces or dashes): a chunk carries at
# least one token, so text past budget x this, or more chunks with text than the budget, is more than asked.
MAX_TOKEN_TEXT_BYTES = 256
# A node's signed receipt: a few hundred bytes; past this it is refused, never turned into a header.
MAX_RECEIPT_BYTES = 16 * 1024
# Lines up to this size are parsed on the event loop; larger ones on a worker thread.
INLINE_PARSE_BYTES = 64 * 1024


class NodeDropped(Exception):
    """The node's stream broke: connection lost, timed out, a bound passed, or an error event instead of text."""

    def __init__(self, reason: str, error_class: ErrorClass = "protocol") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_class: ErrorClass = error_class


@dataclass(frozen=True)
class StreamLimits:
    """How long a node may take: silent (`idle_s`, to its headers and between two events) and in all."""

    idle_s: float
    deadline_s: float


def wire_bytes(budget: int) -> int:
    """All a stream whose completion budget is `budget` tokens may send."""
    return BASE_BYTES + budget * BYTES_PER_TOKEN


def wire_events(budget: int) -> int:
    """How many events it may send."""
    return budget + EXTRA_EVENTS


async def data_events(
    response: httpx.Response, limits: StreamLimits, *, deadline: float, budget: int
) -> AsyncIterator[str]:
    """Each event's data, as text; comments, `event:`, `id:` and `retry:` lines are skipped.

    `deadline`: the event loop's time by which the whole stream must end. NodeDropped on a line over
    MAX_LINE_BYTES, more bytes or events than the budget allows, a silence over `idle_s` (comments and
    blank lines do not end one), or the deadline.
    """
    loop = asyncio.get_running_loop()
    most_bytes, most_events = wire_bytes(budget), wire_events(budget)
    raw = response.aiter_raw()  # as sent: a compressed body is not inflated here (and fails to parse)
    buffer = bytearray()
    data: list[bytes] = []
    data_size = total = events = 0
    quiet_until = loop.time() + limits.idle_s
    while True:
        try:
            async with asyncio.timeout_at(min(deadline, quiet_until)):
                piece = await anext(raw)
        except StopAsyncIteration:
            break
        except TimeoutError:
            if loop.time() >= deadline:
                raise NodeDropped(f"past its deadline ({limits.deadline_s:g} s)", "timeout") from None
            raise NodeDropped(f"timed out (silent for {limits.idle_s:g} s)", "timeout") from None
        total += len(piece)
        buffer += piece
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end]).removesuffix(b"\r")
            start = end + 1
            if line:
                if line.startswith(b"data:"):  # comments (":...") and other fields keep nothing alive
                    value = line[5:].removeprefix(b" ")
                    data_size += len(value) + 1
                    if data_size > MAX_LINE_BYTES:
                        raise NodeDropped(f"an event over {MAX_LINE_BYTES} bytes", "bound")
                    data.append(value)
                continue
            if data:  # a blank line ends an event
                events += 1
                if events > most_events:
                    raise NodeDropped(f"sent over {most_events} events for a budget of {budget} tokens", "bound")
                yield b"\n".join(data).decode(errors="replace")
                data, data_size = [], 0
                quiet_until = loop.time() + limits.idle_s
        del buffer[:start]
        if len(buffer) > MAX_LINE_BYTES:
            raise NodeDropped(f"a line over {MAX_LINE_BYTES} bytes", "bound")
        if total > most_bytes:
            raise NodeDropped(f"sent over {most_bytes} bytes for a budget of {budget} tokens", "bound")
    if data:  # the last event, without its blank line
        yield b"\n".join(data).decode(errors="replace")


async def parsed(text: str) -> Any:
    """JSON text as Python, off the event loop when large (ValueError when it is not JSON)."""
    if len(text) <= INLINE_PARSE_BYTES:
        return json.loads(text)
    return await asyncio.to_thread(json.loads, text)
