"""Anthropic's content blocks and messages as a request carries them; blocks we cannot honour are refused by name."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from pinaivu_local.api.http.validation import StrictBody

TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # what the tool-call grammar and parser take (Anthropic allows up to 128)

# Block types Anthropic defines that these models cannot take, with what each would ask for.
_REFUSED_BLOCKS = {
    "image": "image blocks (these models read text only)",
    "document": "document blocks (send the document's text in a text block)",
    "search_result": "search_result blocks (send the results as text)",
    "thinking": "thinking blocks (these models do not think before answering, and never sent one)",
    "redacted_thinking": "redacted_thinking blocks (these models never sent one)",
    "server_tool_use": "server tool blocks (no server tools run here)",
    "web_search_tool_result": "server tool blocks (no server tools run here)",
    "web_fetch_tool_result": "server tool blocks (no server tools run here)",
    "code_execution_tool_result": "server tool blocks (no server tools run here)",
    "mcp_tool_use": "MCP blocks (no MCP servers are connected here)",
    "mcp_tool_result": "MCP blocks (no MCP servers are connected here)",
    "container_upload": "container_upload blocks (no code execution here)",
}
# Which blocks each role's message may hold.
_ALLOWED = {"user": ("text", "tool_result"), "assistant": ("text", "tool_use"), "system": ("text",)}


def or_text(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of a list of blocks a string may stand for: the document says a string is accepted."""
    if "anyOf" in schema:
        schema["anyOf"].insert(0, {"type": "string"})
        return
    array = {key: schema.pop(key) for key in ("type", "items", "minItems") if key in schema}
    schema["anyOf"] = [{"type": "string"}, array]


def block_type(block: Any) -> str | None:
    """A block's `type` where it is a string (else None: the model's own validation names what is wrong)."""
    kind = block.get("type") if isinstance(block, dict) else None
    return kind if isinstance(kind, str) else None


def text_blocks(value: Any) -> Any:
    """A `system` string as one text block (before validation): a list, so errors name no union member."""
    return [{"type": "text", "text": value}] if isinstance(value, str) else value


class TextBlock(StrictBody):
    """`{"type": "text", "text": ...}`; cache_control is accepted (the prefix cache is automatic)."""

    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = None
    citations: Annotated[list[Any] | None, Field(max_length=0)] = None  # only as a response of ours left it


class ToolUseBlock(StrictBody):
    """An assistant's call to a tool, as a response of ours carried it."""

    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(pattern=TOOL_NAME)
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None
    # As the SDK sends a response's block back: who called (a client tool's caller is direct), its toolset.
    caller: dict[str, Literal["direct"]] | None = None
    toolset_name: str | None = None


class ToolResultBlock(StrictBody):
    """What a tool call returned: text (a string or text blocks), maybe an error."""

    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: list[TextBlock] | None = Field(default=None, json_schema_extra=or_text)  # a string: one text block
    is_error: bool | None = None
    cache_control: dict[str, Any] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if isinstance(value, list):
            for block in value:
                kind = block_type(block)
                if kind != "text" and kind in _REFUSED_BLOCKS:
                    raise PydanticCustomError(
                        "value_error.unsupported",
                        f"{_REFUSED_BLOCKS[kind]} are not supported in a tool_result; send its content as text",
                    )
        return value

    def text(self) -> str:
        """The result as one text."""
        return "".join(block.text for block in self.content or ())


Block = Annotated[TextBlock | ToolUseBlock | ToolResultBlock, Discriminator("type")]


class Message(StrictBody):
    """One turn: a user's text and tool results, an assistant's text and tool calls, or (as agents send
    them between turns) a system message's text."""

    role: Literal["user", "assistant", "system"]
    content: list[Block] = Field(json_schema_extra=or_text)  # a string: one text block

    @field_validator("content", mode="before")
    @classmethod
    def _blocks_we_take(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if not isinstance(value, list):
            return value
        role = info.data.get("role")
        for block in value:
            kind = block_type(block)
            if kind in _REFUSED_BLOCKS:
                raise PydanticCustomError(
                    "value_error.unsupported",
                    f"{_REFUSED_BLOCKS[kind]} are not supported by pinaivu-local; send the request without them",
                )
            if role in _ALLOWED and kind in ("text", "tool_use", "tool_result") and kind not in _ALLOWED[role]:
                raise PydanticCustomError(
                    "value_error.block_role",
                    f"a {kind} block belongs in {'an assistant' if kind == 'tool_use' else 'a user'} message, "
                    f"not a {role} one",
                )
        return value
