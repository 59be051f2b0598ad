"""Hands a started Run to the client as a Responses answer: one response object, or its stream of events.

Either way the request's record is durable (Run.recorded) and, with `store`, the response is stored,
before the answer's last bytes go out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.response import Stream

from pinaivu_local.api.flow.inference import CLIENT_CLOSED, Run
from pinaivu_local.api.flow.request import FinishReason
from pinaivu_local.api.flow.tool_calls import ArgumentsPiece, CallStart, ContentPiece, Event, ToolCallParser
from pinaivu_local.api.http.disconnect import unless_disconnected
from pinaivu_local.api.http.error_rendering import status_of
from pinaivu_local.api.openai.responses import RECEIPT_HEADER
from pinaivu_local.api.openai.serving import collect
from pinaivu_local.api.responses.items import new_item_id
from pinaivu_local.api.responses.shapes import (
    Events,
    ItemStatus,
    ResponseObject,
    Status,
    call_item,
    message_item,
    output_items,
    text_part,
)
from pinaivu_local.api.responses.store import ResponseStore, StoredResponse
from pinaivu_local.clock import utcnow
from pinaivu_local.errors import PinaivuError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What a response needs beside its run: its object, and what storing it keeps."""

    response: ResponseObject
    key_id: str
    inputs: list[dict[str, Any]]  # this request's own input items, as stored
    store: ResponseStore | None  # None: `store: false`, nothing is kept

    def status(self, finish: FinishReason) -> Status:
        """`incomplete` when max_output_tokens cut it."""
        return "incomplete" if finish == "length" else "completed"

    async def keep(self, body: dict[str, Any], output: list[dict[str, Any]]) -> None:
        """Store the response (durably) unless `store` was false."""
        if self.store is None:
            return
        await self.store.save(
            StoredResponse(
                id=self.response.id,
                key_id=self.key_id,
                created_at=utcnow(),
                model=self.response.identity.model_id,
                request_id=self.response.request_id,
                previous_response_id=self.response.echo.get("previous_response_id"),
                input_items=json.dumps(self.inputs),
                output_items=json.dumps(output),
                response=json.dumps(body),
            )
        )


async def respond(request: Request[Any, Any, Any], run: Run, answer: Answer, *, stream: bool) -> Response[Any]:
    """The response for `run`: a stream of events that starts at once, or the whole object once done."""
    headers = {"x-request-id": run.request_id}
    if stream:
        return Stream(
            _events(run, answer),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    collected = await unless_disconnected(request, run, collect)
    if collected is None:
        return Response(None, status_code=CLIENT_CLOSED, headers=headers)  # nobody reads it (nginx's 499)
    text, finish, usage = collected
    await run.recorded()  # the body goes out only once its record is durable (else 503)
    status = answer.status(finish)
    output = output_items(text, run.tool_names, cut=status == "incomplete")
    body = answer.response.body(status, output, usage)
    await answer.keep(body, output)
    if run.signed is not None:
        headers[RECEIPT_HEADER] = run.signed.header_value()
    return Response(body, headers=headers)


async def _events(run: Run, answer: Answer) -> AsyncIterator[bytes]:
    """created, in_progress, each output item's events, then completed (or incomplete, or failed).

    Each yield is one write to the socket: the events of one delta go out together, the last ones once
    the record is durable and the response stored.
    """
    response = answer.response
    events = Events()
    output = _Output(events)
    parser = ToolCallParser(run.tool_names) if run.tool_names else None
    started = response.body("in_progress", [])
    yield events.event("response.created", response=started) + events.event("response.in_progress", response=started)
    try:
        async for delta in run.deltas():
            pieces: list[Event] = [ContentPiece(delta.text)] if delta.text else []
            if parser is not None:
                pieces = parser.push(delta.text) + (parser.finish() if delta.finish_reason else [])
            sent = output.push(pieces)
            if delta.finish_reason is None:
                if sent:
                    yield sent
                continue
            called = any(item["type"] == "function_call" for item in output.items)
            finish: FinishReason = "tool_calls" if called and delta.finish_reason == "stop" else delta.finish_reason
            run.end(200, finish, delta.usage)  # signs the receipt the last event carries
            status = answer.status(finish)
            sent += output.close(cut=status == "incomplete")
            await run.recorded()  # the end only once the record is durable; else response.failed below
            body = response.body(status, output.items, delta.usage)
            await answer.keep(body, output.items)
            receipt = run.signed.envelope() if run.signed else None
            last = response.body(status, output.items, delta.usage, receipt=receipt)
            yield sent + events.event(f"response.{status}", response=last)
            return
    except PinaivuError as exc:  # the status line is gone: report in-band, as OpenAI does
        log.warning("stream %s failed: %s", response.request_id, exc.message)
        run.end(status_of(exc)[0], error=exc.message)
        error = {"code": "server_error", "message": exc.message}
        yield events.event("error", code=exc.code, message=exc.message, param=exc.param) + events.event(
            "response.failed", response=response.body("failed", output.items, error=error)
        )
    finally:
        run.end(CLIENT_CLOSED, error="the client disconnected")


class _Output:
    """A stream's output items as they open, grow and close, and the events that say so."""

    def __init__(self, events: Events) -> None:
        self._events = events
        self.items: list[dict[str, Any]] = []  # closed items, as the final response lists them
        self._open: dict[str, Any] | None = None  # the item being written
        self._held = ""  # blank text before any item: dropped if a call follows, else the message's start

    def push(self, pieces: list[Event]) -> bytes:
        """The events of newly parsed output."""
        sent: list[bytes] = []
        for piece in pieces:
            if isinstance(piece, ContentPiece):
                if self._open is None or self._open["type"] != "message":
                    if self._open is None and not piece.text.strip():
                        self._held += piece.text
                        continue
                    sent.append(self._close_open("completed"))
                    sent.append(self._open_message())
                text, self._held = self._held + piece.text, ""
                assert self._open is not None
                self._open["text"] += text
                sent.append(self._event("response.output_text.delta", content_index=0, delta=text, logprobs=[]))
            elif isinstance(piece, CallStart):
                sent.append(self._close_open("completed"))
                self._held = ""
                self._open = call_item(new_item_id("function_call"), piece.id, piece.name, "", "in_progress")
                sent.append(self._added(self._open))
            elif isinstance(piece, ArgumentsPiece) and self._open is not None:
                self._open["arguments"] += piece.text
                sent.append(self._event("response.function_call_arguments.delta", delta=piece.text))
        return b"".join(sent)

    def close(self, *, cut: bool) -> bytes:
        """The output ended: close what is open (an answer with no output at all is one empty message)."""
        sent = []
        if self._open is None and not self.items:
            sent.append(self._open_message())
            if self._held:
                assert self._open is not None
                self._open["text"] = self._held
                sent.append(self._event("response.output_text.delta", content_index=0, delta=self._held, logprobs=[]))
        sent.append(self._close_open("incomplete" if cut else "completed"))
        return b"".join(sent)

    def _open_message(self) -> bytes:
        item = message_item(new_item_id("message"), None, "in_progress")
        self._open = {**item, "text": ""}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return self._added(item) + self._event("response.content_part.added", content_index=0, part=part)

    def _added(self, item: dict[str, Any]) -> bytes:
        shown = {k: v for k, v in item.items() if k != "text"}
        return self._events.event("response.output_item.added", output_index=len(self.items), item=shown)

    def _event(self, kind: str, **fields: Any) -> bytes:
        assert self._open is not None
        return self._events.event(kind, item_id=self._open["id"], output_index=len(self.items), **fields)

    def _close_open(self, status: ItemStatus) -> bytes:
        """The events that close the open item, which joins `items`."""
        current = self._open
        if current is None:
            return b""
        if current["type"] == "message":
            text = current["text"]
            item = message_item(current["id"], text, status)
            sent = self._event("response.output_text.done", content_index=0, text=text, logprobs=[])
            sent += self._event("response.content_part.done", content_index=0, part=text_part(text))
        else:
            # A call cut by max_output_tokens is incomplete: cut inside its arguments.
            item = call_item(current["id"], current["call_id"], current["name"], current["arguments"], status)
            sent = self._event(
                "response.function_call_arguments.done", name=current["name"], arguments=current["arguments"]
            )
        sent += self._events.event("response.output_item.done", output_index=len(self.items), item=item)
        self.items.append(item)
        self._open = None
        return sent
