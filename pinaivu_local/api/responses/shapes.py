"""The response object, its output items and its stream events, in the shapes the openai SDK parses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from pinaivu_local.api.flow.request import RunIdentity
from pinaivu_local.api.flow.tool_calls import parse_output
from pinaivu_local.api.responses.items import new_item_id
from pinaivu_local.api.responses.protocol import CreateResponse
from pinaivu_local.engine.generation import Usage
from pinaivu_local.wire import RECEIPT_FIELD

Status = Literal["in_progress", "completed", "incomplete", "failed"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


def new_response_id() -> str:
    """A response id in OpenAI's shape: `resp_...`."""
    return f"resp_{uuid.uuid4().hex}"


def usage_body(usage: Usage) -> dict[str, Any]:
    """The Responses usage object, with the input tokens served from the prefix cache."""
    return {
        "input_tokens": usage.prompt_tokens,
        # cache_write_tokens: OpenAI bills writing its prompt cache; keeping a prefix here costs nothing.
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def text_part(text: str) -> dict[str, Any]:
    """An `output_text` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: ItemStatus) -> dict[str, Any]:
    """An assistant `message` output item (no content parts while it has none)."""
    content = [] if text is None else [text_part(text)]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: ItemStatus) -> dict[str, Any]:
    """A `function_call` output item."""
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(text: str, tool_names: tuple[str, ...], cut: bool) -> list[dict[str, Any]]:
    """A whole answer's output: its text as a message, and a call to one of its tools as a function_call."""
    status: ItemStatus = "incomplete" if cut else "completed"
    if not tool_names:
        return [message_item(new_item_id("message"), text, status)]
    parsed = parse_output(text, tool_names)
    items = []
    if parsed.content is not None or parsed.call is None:
        items.append(message_item(new_item_id("message"), parsed.content or "", status))
    if parsed.call is not None:
        items.append(
            call_item(new_item_id("function_call"), parsed.call.id, parsed.call.name, parsed.arguments, "completed")
        )
    return items


def echoed(body: CreateResponse) -> dict[str, Any]:
    """The request's fields a response object repeats."""
    fmt = body.text.format if body.text and body.text.format else None
    choice = body.tool_choice
    return {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "parallel_tool_calls": True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "tool_choice": "auto" if choice is None else choice if isinstance(choice, str) else choice.model_dump(),
        "tools": [
            {"strict": True, "description": None, **t.model_dump(exclude_none=True), "parameters": t.parameters}
            for t in body.tools or []
        ],
        "text": {"format": fmt.model_dump(exclude_none=True, by_alias=True) if fmt else {"type": "text"}},
        "truncation": "disabled",
        "user": body.user,
        "store": body.store is not False,
        "background": False,
        "reasoning": None,
        "service_tier": body.service_tier or "default",
    }


@dataclass(frozen=True)
class ResponseObject:
    """One response's ids and echoed fields; its body at each moment of its life."""

    id: str
    identity: RunIdentity
    echo: dict[str, Any]

    @property
    def request_id(self) -> str:
        """The id a user looks the request up by (also the x-request-id header)."""
        return self.identity.request_id

    def body(
        self,
        status: Status,
        output: list[dict[str, Any]],
        usage: Usage | None = None,
        *,
        error: dict[str, Any] | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The response object; `incomplete` is a cut by max_output_tokens."""
        body = {
            "id": self.id,
            "object": "response",
            "created_at": self.identity.created,
            "status": status,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "model": self.identity.model_id,
            "output": output,
            "usage": None if usage is None else usage_body(usage),
            **self.echo,
            "request_id": self.request_id,
        }
        if receipt is not None:
            body[RECEIPT_FIELD] = receipt
        return body


_encode = msgspec.json.Encoder().encode


@dataclass
class Events:
    """A stream's events, numbered in order (sequence_number) as the SDK expects."""

    sent: int = field(default=0)

    def event(self, kind: str, **fields: Any) -> bytes:
        """One server-sent event of type `kind`."""
        payload = {"type": kind, "sequence_number": self.sent, **fields}
        self.sent += 1
        return b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n"
