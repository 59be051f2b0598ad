"""Tools a request offers and the call it asks for, whatever API family sent them: template tools and a
grammar constraint for the engine, the names its output is parsed for, and the digest its record keeps.

`required` and a named tool force a call from the first token; `auto` lets the model write text or open
a call, whose arguments are then held to the tool's schema; `none` shows the model no tools at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pinaivu_local.engine.grammars import tool_call_constraint
from pinaivu_local.engine.prepared import Constraint
from pinaivu_local.errors import InvalidRequest
from pinaivu_local.requestlog.commitment import canonical_json

# What a request asks of its tools: nothing, maybe a call, a call to any of them, a call to one.
CallMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, its arguments' JSON schema, and how the chat template lists it (OpenAI's shape)."""

    name: str
    parameters: dict[str, Any] | None
    template: dict[str, Any]


@dataclass(frozen=True)
class OutputStructure:
    """What a request's structure fields become: template tools, a constraint, callable tool names."""

    template_tools: list[dict[str, Any]] | None = None
    constraint: Constraint | None = None
    tool_names: tuple[str, ...] = ()  # non-empty: the output is parsed for a call to one of these


def call_structure(tools: Sequence[ToolSpec], mode: CallMode, named: str | None = None) -> OutputStructure | None:
    """The structure of a request's tools; None where no call can be made (no tools, or mode `none`).

    InvalidRequest names what cannot be served: tools sharing a name, a call asked for without tools, a
    named tool that is not among them.
    """
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("tools: each tool needs its own name.", param="tools")
    if not tools:
        if mode not in ("none", "auto"):
            raise InvalidRequest("tool_choice asks for a tool call, but the request has no tools.", param="tool_choice")
        return None
    if mode == "none":
        # The model may not call: the tools are not shown to it at all (Llama would answer with a call).
        return None
    callable_tools = list(tools)
    if mode == "named":
        callable_tools = [t for t in tools if t.name == named]
        if not callable_tools:
            raise InvalidRequest(
                f"tool_choice names the tool {named!r}, which is not in tools ({', '.join(names)}).",
                param="tool_choice",
            )
    schemas = [(t.name, t.parameters or {"type": "object", "properties": {}}) for t in callable_tools]
    return OutputStructure(
        template_tools=[t.template for t in tools],
        constraint=tool_call_constraint(schemas, lazy=mode == "auto"),
        tool_names=tuple(name for name, _ in schemas),
    )


def structure_digest(fields: dict[str, Any]) -> str | None:
    """SHA-256 of the structure fields' canonical JSON (None without any): what a record keeps of them."""
    if not fields:
        return None
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()
