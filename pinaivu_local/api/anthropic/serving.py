"""Hands a started Run to the client as Anthropic answers: one message object, or its event stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response
from litestar.response import Stream

import pinaivu_local.api.anthropic.shapes as shapes
from pinaivu_local.api.flow.inference import CLIENT_CLOSED, Run
from pinaivu_local.api.flow.tool_calls import (
    ArgumentsPiece,
    CallStart,
    ContentPiece,
    Event,
    ToolCallParser,
    parse_output,
)
from pinaivu_local.api.http.disconnect import unless_disconnected
from pinaivu_local.api.http.error_rendering import anthropic_error_body, status_of
from pinaivu_local.engine.generation import Delta
from pinaivu_local.errors import PinaivuError
from pinaivu_local.wire import RECEIPT_FIELD, RECEIPT_HEADER

log = logging.getLogger(__name__)

# A stream with nothing new for this long gets a ping (a long prompt's prefill, a slow model), so proxies
# and clients that time idle connections out keep it.
PING_INTERVAL_S = 10.0


def headers_of(run: Run) -> dict[str, str]:
    """The ids every answer carries: Anthropic's request-id header, and ours."""
    return {"request-id": run.request_id, "x-request-id": run.request_id}


async def respond(request: Request[Any, Any, Any], run: Run, *, stream: bool) -> Response[Any]:
    """The response for `run`: an event stream that starts at once, or the whole message once it is done."""
    headers = headers_of(run)
    if stream:
        return Stream(
            events(run),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    last = await unless_disconnected(request, run, collect)
    if last is None:
        return Response(None, status_code=CLIENT_CLOSED, headers=headers)  # nobody reads it (nginx's 499)
    await run.recorded()  # group commit: the body goes out only once its record is durable (else 503)
    body = whole_message(run, last)
    if run.signed is not None:
        headers[RECEIPT_HEADER] = run.signed.header_value()
        body[RECEIPT_FIELD] = run.signed.envelope()
    return Response(body, headers=headers)


def whole_message(run: Run, last: Delta) -> dict[str, Any]:
    """The message object of an ended run, its output as text and tool_use blocks."""
    assert last.usage is not None
    content: list[dict[str, Any]] = []
    called = False
    if run.tool_names:
        parsed = parse_output(run.text, run.tool_names)
        if parsed.content:
            content.append(shapes.text_block(parsed.content))
        if parsed.call is not None:
            content.append(shapes.tool_use_block(parsed.call, parsed.arguments))
            called = True
    elif run.text:
        content.append(shapes.text_block(run.text))
    reason = shapes.stop_reason(last, called)
    return shapes.message(run.identity, content, reason, last.stop_sequence, shapes.usage_body(last.usage))


async def collect(run: Run) -> Delta:
    """Run it to its end; the last delta (finish reason, usage, stop sequence). The run is ended."""
    try:
        async for delta in run.deltas():
            if delta.finish_reason and delta.usage:
                run.end(200, run.answer_finish(delta.finish_reason), delta.usage)
                return delta
    except PinaivuError as exc:
        run.end(status_of(exc)[0], error=exc.message)
        raise
    raise RuntimeError("generation ended without a finish reason")


class _Blocks:
    """The content blocks of a stream as its output is parsed: which is open, and its index."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None  # "text" or "tool_use"
        self.called = False

    def events_of(self, piece: Event) -> list[bytes]:
        """The events of one parsed piece of output, opening and closing blocks as it needs."""
        if isinstance(piece, ContentPiece):
            return [*self._opened("text", shapes.text_block("")), shapes.text_delta(self.index, piece.text)]
        if isinstance(piece, CallStart):
            self.called = True
            block = {"type": "tool_use", "id": shapes.tool_use_id(piece), "name": piece.name, "input": {}}
            return self._close() + self._opened("tool_use", block)
        assert isinstance(piece, ArgumentsPiece)
        return [shapes.input_json_delta(self.index, piece.text)]

    def _opened(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        if self.open == kind:
            return []
        closed = self._close()
        self.index += 1
        self.open = kind
        return [*closed, shapes.block_start(self.index, block)]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [shapes.block_stop(self.index)]

    def close(self) -> list[bytes]:
        """The end of the output: the open block is complete."""
        return self._close()


async def events(run: Run, ping_interval_s: float = PING_INTERVAL_S) -> AsyncIterator[bytes]:
    """The event stream: message_start and a ping, content blocks and their deltas, message_delta,
    message_stop (with the receipt, once the record is durable); a ping whenever nothing came for
    `ping_interval_s`; an error event if the run fails after the stream began."""
    parser = ToolCallParser(run.tool_names) if run.tool_names else None
    blocks = _Blocks()
    try:
        yield shapes.message_start(run.identity, run.prompt_tokens) + shapes.PING
        async for delta in _with_pings(run.deltas(), ping_interval_s):
            if delta is None:
                yield shapes.PING
                continue
            ended = delta.finish_reason is not None
            if parser is not None:  # text and call pieces, never half-parsed call text as text
                pieces = parser.push(delta.text) + (parser.finish() if ended else [])
            else:
                pieces = [ContentPiece(delta.text)] if delta.text else []
            out = [e for piece in pieces for e in blocks.events_of(piece)]
            if not ended:
                if out:
                    yield b"".join(out)
                continue
            assert delta.finish_reason is not None and delta.usage is not None
            reason = shapes.stop_reason(delta, blocks.called)
            run.end(200, "tool_calls" if reason == "tool_use" else delta.finish_reason, delta.usage)
            out += blocks.close()
            out.append(shapes.message_delta(reason, delta.stop_sequence, delta.usage))
            await run.recorded()  # the end only once the record is durable; else an error event below
            yield b"".join([*out, shapes.message_stop(run.signed.envelope() if run.signed else None)])
    except PinaivuError as exc:  # the status line is gone: report in-band, as Anthropic does
        log.warning("stream %s failed: %s", run.request_id, exc.message)
        status = status_of(exc)[0]
        run.end(status, error=exc.message)
        yield shapes.error_event(anthropic_error_body(exc.message, status))
    finally:
        run.end(CLIENT_CLOSED, error="the client disconnected")


async def _with_pings(deltas: AsyncIterator[Delta], interval_s: float) -> AsyncIterator[Delta | None]:
    """The deltas, with None wherever `interval_s` passed without one (the next is still awaited, never
    cancelled: a generation's iterator must not be interrupted midway)."""
    iterator = aiter(deltas)
    while True:
        step = asyncio.ensure_future(_next(iterator))
        try:
            while not (await asyncio.wait({step}, timeout=interval_s))[0]:
                yield None
        finally:
            if not step.done():
                step.cancel()
        delta = step.result()
        if delta is None:
            return
        yield delta


async def _next(iterator: AsyncIterator[Delta]) -> Delta | None:
    """The next delta, None at the end (a task may not end in StopAsyncIteration)."""
    return await anext(iterator, None)
