"""An Anthropic conversation (system and messages) as the chat template takes it, and as a gateway's nodes do.

Both are OpenAI chat's messages: a system message, user and assistant turns, an assistant turn's tool_use
blocks as its `tool_calls` (their input an object for the template, a JSON string for a node), and each
tool_result block as a `tool` message of its own, before the user turn's text.

The billing line. Claude Code starts its system prompt with a block `x-anthropic-billing-header: cc_version=...;
cc_entrypoint=...; cch=<hash>;` whose hash changes on every request: kept in the prompt, it is the first
thing two requests differ in, and no cached prefix survives it. It is Anthropic's metadata, not an
instruction, so it is not part of the prompt: a system text's first line that starts with
`x-anthropic-billing-header:` is left out (the commitment still holds the system as sent). llama.cpp's
server, vLLM and SGLang do the same (llama.cpp overwrites the hash with a constant).
"""

from __future__ import annotations

import json
from typing import Any

from pinaivu_local.api.anthropic.blocks import Message, TextBlock, ToolResultBlock, ToolUseBlock
from pinaivu_local.engine.prepared import nesting_depth
from pinaivu_local.errors import InvalidRequest

BILLING_LINE = "x-anthropic-billing-header:"
# The chat template writes call input level by level, recursively: deeper would exhaust the stack (a 500).
MAX_INPUT_NESTING = 64
# How a tool_result with is_error is shown to the model (the template has no field for it).
ERROR_PREFIX = "Error: "


def system_text(system: list[TextBlock] | None) -> str | None:
    """The system prompt as one text, its blocks joined as Anthropic joins them, a billing line left out."""
    if system is None:
        return None
    kept = [text for text in (without_billing_line(block.text) for block in system) if text]
    return "".join(kept) if kept else None


def without_billing_line(text: str) -> str:
    """`text` without its first line when that line is a per-request billing header (see the module's note)."""
    if not text.startswith(BILLING_LINE):
        return text
    _, newline, rest = text.partition("\n")
    return rest if newline else ""


def conversation(system: list[TextBlock] | None, messages: list[Message]) -> list[dict[str, Any]]:
    """The messages as the chat template takes them: a call's input an object."""
    return _openai_messages(system, messages, arguments_as_text=False)


def node_conversation(system: list[TextBlock] | None, messages: list[Message]) -> list[dict[str, Any]]:
    """The messages as OpenAI chat sends them, which is how a gateway's nodes take them: a call's input a string."""
    return _openai_messages(system, messages, arguments_as_text=True)


def _openai_messages(
    system: list[TextBlock] | None, messages: list[Message], *, arguments_as_text: bool
) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    text = system_text(system)
    if text is not None:
        rendered.append({"role": "system", "content": text})
    for message in messages:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                rendered.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _result(block)})
            elif isinstance(block, ToolUseBlock):
                calls.append(_call(block, arguments_as_text))
            else:
                texts.append(block.text)
        if message.role == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
            if calls:
                turn["tool_calls"] = calls
            rendered.append(turn)
        elif texts:
            rendered.append({"role": message.role, "content": "".join(texts)})
    return rendered


def _result(block: ToolResultBlock) -> str:
    return ERROR_PREFIX + block.text() if block.is_error else block.text()


def _call(block: ToolUseBlock, arguments_as_text: bool) -> dict[str, Any]:
    if nesting_depth(block.input) > MAX_INPUT_NESTING:
        raise InvalidRequest(
            f"The input of the tool_use {block.id} ({block.name}) in the history nests more than "
            f"{MAX_INPUT_NESTING} levels deep; send flatter input.",
            param="messages",
        )
    arguments: Any = json.dumps(block.input, ensure_ascii=False) if arguments_as_text else block.input
    return {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}}
