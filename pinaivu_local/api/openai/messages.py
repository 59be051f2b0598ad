"""A conversation's messages as OpenAI's chat sends them, and as the chat template takes them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pinaivu_local.api.flow.call_arguments import argument_values
from pinaivu_local.api.http.validation import StrictBody
from pinaivu_local.api.openai.fields import CONTENT, EMPTY_LIST, ONLY_EMPTY, empty, not_yet


class FunctionCall(StrictBody):
    """The function an assistant message called: its name and arguments (a JSON object, as a string)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    arguments: str = Field(
        description="a JSON object, as a string",
        json_schema_extra={"contentMediaType": "application/json", "contentSchema": {"type": "object"}},
    )

    def argument_values(self) -> dict[str, Any]:
        """The arguments as the chat template writes them (a JSON object)."""
        return argument_values(self.name, self.arguments, where="history", param="messages")


class ToolCall(StrictBody):
    """One call in an assistant message of a history."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def _content_or_calls(schema: dict[str, Any]) -> None:
    """`content` is required, except in an assistant turn that calls tools (see _call_without_content)."""
    schema["required"] = [field for field in schema.get("required", []) if field != "content"]
    schema["anyOf"] = [
        {"required": ["content"]},
        {
            "properties": {"role": {"const": "assistant"}, "tool_calls": {"type": "array", "minItems": 1}},
            "required": ["role", "tool_calls"],
        },
    ]


class ChatMessage(StrictBody):
    """One message of a conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[Any, CONTENT] = Field(
        description="a string, or a list of text parts; an assistant turn that only calls tools may omit it"
    )
    name: str | None = None
    # What an assistant message returned by the openai SDK carries when it is sent back in a
    # history; refusal, annotations and audio are accepted while empty.
    refusal: str | None = None
    annotations: Annotated[list[Any] | None, EMPTY_LIST] = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: Annotated[Any, ONLY_EMPTY] = None
    audio: Annotated[Any, ONLY_EMPTY] = None

    model_config = ConfigDict(json_schema_extra=_content_or_calls)

    @model_validator(mode="before")
    @classmethod
    def _call_without_content(cls, value: Any) -> Any:
        # An assistant turn that is only a tool call may leave content out, as the SDK sends it back.
        if isinstance(value, dict) and value.get("role") == "assistant" and value.get("tool_calls"):
            return {"content": None, **value}
        return value

    @field_validator("function_call", "audio", "annotations")
    @classmethod
    def _history_without_features(cls, value: Any, info: ValidationInfo) -> Any:
        if not empty(value):
            what = {"audio": "audio", "annotations": "a message with annotations"}.get(
                info.field_name or "", "function_call (the deprecated form of tool_calls)"
            )
            raise not_yet(what, info.field_name or "")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise PydanticCustomError("type_error.str", "str type expected, or a list of content parts")
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise PydanticCustomError(
                    "value_error.content_part",
                    "only text content parts ({'type': 'text', 'text': '...'}) are supported by these models",
                )
        return value

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if isinstance(self.content, list):
            return "".join(part["text"] for part in self.content)
        return self.content or ""


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the chat template takes them: role, text content, and calls with their arguments as objects."""
    rendered: list[dict[str, Any]] = []
    for m in messages:
        message: dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.argument_values()},
                }
                for c in m.tool_calls
            ]
        if m.tool_call_id is not None:
            message["tool_call_id"] = m.tool_call_id
        rendered.append(message)
    return rendered
