"""A Responses conversation (instructions, earlier responses' items, this request's input) as the chat
template takes it, as a gateway's nodes take it (OpenAI chat's messages), and as items to store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pinaivu_local.api.flow.call_arguments import argument_values
from pinaivu_local.api.responses.protocol import FunctionCallItem, FunctionCallOutputItem, InputItem, MessageItem

_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def new_item_id(kind: str) -> str:
    """An item id in OpenAI's shape: `msg_...`, `fc_...`, `fco_...`."""
    return f"{_ID_PREFIX.get(kind, 'item')}_{uuid.uuid4().hex}"


def stored_items(items: list[InputItem]) -> list[dict[str, Any]]:
    """This request's input items as they are kept and listed (input_items): each with an id."""
    kept = []
    for item in items:
        dumped = item.model_dump(exclude_none=True, by_alias=True)
        dumped.setdefault("type", "message")
        dumped.setdefault("id", new_item_id(dumped["type"]))
        if isinstance(item, MessageItem) and isinstance(item.content, str):
            part = "output_text" if item.role == "assistant" else "input_text"
            dumped["content"] = [{"type": part, "text": item.content}]
        kept.append(dumped)
    return kept


@dataclass(frozen=True)
class Conversation:
    """Everything the model sees, in the three shapes the flow needs."""

    template: list[dict[str, Any]]  # what ChatPrompt takes: text content, call arguments as objects
    node_messages: list[dict[str, Any]]  # OpenAI chat's messages, call arguments as JSON text
    committed: list[dict[str, Any]]  # the Responses items as the model saw them (instructions first)


def conversation(instructions: str | None, items: list[dict[str, Any]]) -> Conversation:
    """The conversation of `instructions` (this request's only: OpenAI does not carry them over) and
    every item so far, earlier responses' inputs and outputs included, oldest first."""
    committed: list[dict[str, Any]] = []
    if instructions is not None:
        committed.append({"type": "message", "role": "system", "content": instructions})
    committed += items
    template: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for item in committed:
        kind = item.get("type", "message")
        if kind == "message":
            text = _text(item["content"])
            template.append({"role": item["role"], "content": text})
            nodes.append({"role": item["role"], "content": text})
        elif kind == "function_call":
            call = FunctionCallItem.model_validate(item)
            template_call = {
                "id": call.call_id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": argument_values(call.name, call.arguments, where="input", param="input"),
                },
            }
            sent = {"name": call.name, "arguments": call.arguments}  # nodes take the arguments as sent
            node_call = {"id": call.call_id, "type": "function", "function": sent}
            # A call right after the assistant's text of the same turn belongs to that message.
            if template and template[-1]["role"] == "assistant" and "tool_calls" not in template[-1]:
                template[-1]["tool_calls"] = [template_call]
                nodes[-1]["tool_calls"] = [node_call]
            else:
                template.append({"role": "assistant", "content": "", "tool_calls": [template_call]})
                nodes.append({"role": "assistant", "content": None, "tool_calls": [node_call]})
        else:
            output = FunctionCallOutputItem.model_validate(item)
            message = {"role": "tool", "tool_call_id": output.call_id, "content": output.text()}
            template.append(message)
            nodes.append(dict(message))
    return Conversation(template, nodes, committed)


def _text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)
