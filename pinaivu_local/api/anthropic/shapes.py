"""Anthropic's message object and stream events, as its SDK parses them, plus our request_id and receipt.

Usage: input_tokens + cache_read_input_tokens is the prompt. cache_read_input_tokens is what the prefix
cache served (Usage.cached_tokens); cache_creation_input_tokens is 0, since every prompt is cached
automatically and writing it costs nothing extra (no cache_control breakpoint is needed or billed).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from pinaivu_local.api.flow.request import RunIdentity
from pinaivu_local.api.flow.tool_calls import CallStart
from pinaivu_local.engine.generation import Delta, Usage
from pinaivu_local.wire import RECEIPT_FIELD

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]

_encode = msgspec.json.Encoder().encode


def message_id(identity: RunIdentity) -> str:
    """Anthropic's shape of a message id, from the run's own."""
    return f"msg_{identity.hex_id}"


def tool_use_id(call: CallStart) -> str:
    """Anthropic's shape of a tool_use id (`toolu_...`), from the call's."""
    return "toolu_" + call.id.removeprefix("call_")


def stop_reason(last: Delta, called: bool) -> StopReason:
    """Why the answer ended, in Anthropic's words: a call, the budget, a stop sequence, or the model's end."""
    if called and last.finish_reason == "stop":
        return "tool_use"
    if last.finish_reason == "length":
        return "max_tokens"
    return "stop_sequence" if last.stop_sequence is not None else "end_turn"


def usage_body(usage: Usage) -> dict[str, Any]:
    """Anthropic's usage object (see the module's note)."""
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def text_block(text: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": text}


def tool_use_block(call: CallStart, arguments: str) -> dict[str, Any]:
    """A tool_use content block; its input the call's arguments as an object."""
    parsed = json.loads(arguments) if arguments else {}
    return {"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": parsed}


def message(
    identity: RunIdentity,
    content: list[dict[str, Any]],
    reason: StopReason | None,
    stop_sequence: str | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    """The message object: whole, or as message_start announces it (no content or reason yet)."""
    return {
        "id": message_id(identity),
        "type": "message",
        "role": "assistant",
        "model": identity.model_id,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
        "request_id": identity.request_id,
    }


def event(name: str, payload: dict[str, Any]) -> bytes:
    """One server-sent event as Anthropic writes them: its name, then its data."""
    return b"event: " + name.encode() + b"\ndata: " + _encode({"type": name, **payload}) + b"\n\n"


PING = event("ping", {})


def message_start(identity: RunIdentity, prompt_tokens: int) -> bytes:
    """The stream's first event: the message without content; usage as far as it is known."""
    usage = {"input_tokens": prompt_tokens, "output_tokens": 0}
    return event("message_start", {"message": message(identity, [], None, None, usage)})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    """A content block opens (a text block empty, a tool_use block with an empty input)."""
    return event("content_block_start", {"index": index, "content_block": block})


def text_delta(index: int, text: str) -> bytes:
    """More text of the open text block."""
    return event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": text}})


def input_json_delta(index: int, partial_json: str) -> bytes:
    """More of the open tool_use block's input, as JSON text."""
    return event(
        "content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": partial_json}}
    )


def block_stop(index: int) -> bytes:
    """The open content block is complete."""
    return event("content_block_stop", {"index": index})


def message_delta(reason: StopReason, stop_sequence: str | None, usage: Usage) -> bytes:
    """The end of the answer: why it ended, and its whole usage."""
    return event(
        "message_delta", {"delta": {"stop_reason": reason, "stop_sequence": stop_sequence}, "usage": usage_body(usage)}
    )


def message_stop(receipt: dict[str, Any] | None) -> bytes:
    """The stream's last event, with the signed receipt of a completed answer."""
    return event("message_stop", {RECEIPT_FIELD: receipt} if receipt is not None else {})


def error_event(body: dict[str, Any]) -> bytes:
    """An error after the stream began, in Anthropic's envelope."""
    return b"event: error\ndata: " + _encode(body) + b"\n\n"
