"""Hands a started Run to the client: one JSON body, or an SSE stream of chunks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response
from litestar.response import Stream

from pinaivu_local.api.flow.inference import CLIENT_CLOSED, Run
from pinaivu_local.api.flow.request import FinishReason
from pinaivu_local.api.flow.tool_calls import CallStart, ToolCallParser, parse_output
from pinaivu_local.api.http.disconnect import unless_disconnected
from pinaivu_local.api.http.error_rendering import error_body, status_of
from pinaivu_local.api.openai.responses import RECEIPT_HEADER, SSE_DONE, Completion, sse, tool_call_body
from pinaivu_local.engine.generation import Usage
from pinaivu_local.errors import PinaivuError

log = logging.getLogger(__name__)


async def respond(request: Request[Any, Any, Any], run: Run, *, stream: bool) -> Response[Any]:
    """The response for `run`: a stream that starts at once, or the whole body once it is done."""
    headers = {"x-request-id": run.request_id}
    if stream:
        return Stream(
            _sse_events(run),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    collected = await unless_disconnected(request, run, collect)
    if collected is None:
        # Nobody will read this; its status is what the access log and metrics count (nginx's 499).
        return Response(None, status_code=CLIENT_CLOSED, headers=headers)
    text, finish, usage = collected
    await run.recorded()  # group commit: the body goes out only once its record is durable (else 503)
    if run.signed is not None:
        headers[RECEIPT_HEADER] = run.signed.header_value()
    if not run.tool_names:
        return Response(Completion.of(run).body(text, finish, usage, run.logprobs), headers=headers)
    parsed = parse_output(text, run.tool_names)
    calls = [tool_call_body(parsed.call, parsed.arguments)] if parsed.call else None
    return Response(Completion.of(run).body(parsed.content, finish, usage, run.logprobs, calls), headers=headers)


async def collect(run: Run) -> tuple[str, FinishReason, Usage]:
    """All deltas folded into one: the whole text, the finish reason and usage; the run ends."""
    try:
        async for delta in run.deltas():
            if delta.finish_reason and delta.usage:
                finish = run.answer_finish(delta.finish_reason)
                run.end(200, finish, delta.usage)
                return run.text, finish, delta.usage
    except PinaivuError as exc:
        run.end(status_of(exc)[0], error=exc.message)
        raise
    raise RuntimeError("generation ended without a finish reason")


async def _sse_events(run: Run) -> AsyncIterator[bytes]:
    """The SSE stream: role chunk, text chunks, finish chunk, usage chunk if asked, [DONE].

    Each yield is one write to the socket (a system call and a wake-up of the client), so the events of
    one delta go out together, and the last ones with [DONE]: once the record is durable.
    """
    completion = Completion.of(run)
    parser = ToolCallParser(run.tool_names) if run.tool_names else None
    called = ended = False
    try:
        if completion.kind == "chat":
            yield completion.chunk("", first=True)
        async for delta in run.deltas():
            events: list[bytes] = []
            if parser is not None:  # content and call fragments, never half-parsed call text as content
                pieces = parser.push(delta.text) + (parser.finish() if delta.finish_reason else [])
                called = called or any(isinstance(e, CallStart) for e in pieces)
                events += [completion.event_chunk(piece) for piece in pieces]
                if delta.logprobs:
                    events.append(completion.chunk(None, logprobs=delta.logprobs))
            elif delta.finish_reason is None or delta.text or delta.logprobs:
                events.append(completion.chunk(delta.text, logprobs=delta.logprobs))
            if delta.finish_reason is None:
                if events:
                    yield b"".join(events)
                continue
            finish: FinishReason = "tool_calls" if called and delta.finish_reason == "stop" else delta.finish_reason
            run.end(200, finish, delta.usage)  # signs the receipt the last chunk carries
            receipt = run.signed.envelope() if run.signed else None
            with_usage = completion.include_usage and delta.usage is not None
            events.append(completion.chunk(None, finish, receipt=None if with_usage else receipt))
            if with_usage and delta.usage:
                events.append(completion.usage_chunk(delta.usage, receipt=receipt))
            await run.recorded()  # the end only once the record is durable; else an in-band 503 error below
            yield b"".join([*events, SSE_DONE])
            ended = True  # the generation's end marker follows at once: the loop ends by itself
        if not ended:
            yield SSE_DONE
    except PinaivuError as exc:  # the status line is gone: report in-band, as OpenAI does
        log.warning("stream %s failed: %s", completion.request_id, exc.message)
        run.end(status_of(exc)[0], error=exc.message)
        yield sse(error_body(exc.message, "server_error", code=exc.code))
    finally:
        run.end(CLIENT_CLOSED, error="the client disconnected")
