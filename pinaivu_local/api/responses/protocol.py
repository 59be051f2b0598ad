"""POST /v1/responses' body, validated as OpenAI validates it; what we cannot honour is refused by name."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from pinaivu_local.api.http.validation import StrictBody
from pinaivu_local.api.openai.fields import EMPTY_LIST, NOTHING, NULL

_NAME = r"^[A-Za-z0-9_-]{1,64}$"

# Input item and content part types OpenAI has that these models cannot take, in words for the error.
_UNSUPPORTED_PARTS = {
    "input_image": "images",
    "input_file": "files",
    "input_audio": "audio",
    "refusal": "refusal parts",
}
_TEXT_PARTS = ("input_text", "output_text")


def _refused(what: str, field: str) -> PydanticCustomError:
    return PydanticCustomError(
        "value_error.unsupported", f"{what} is not available on these models; send the request without `{field}`"
    )


class TextPart(StrictBody):
    """A text content part: `input_text`, or `output_text` in an assistant message sent back."""

    type: Literal["input_text", "output_text"]
    text: str
    # What an output_text part returned by the openai SDK carries when it is sent back: accepted while empty.
    annotations: Annotated[list[Any] | None, EMPTY_LIST] = None
    logprobs: list[Any] | None = None

    @field_validator("annotations")
    @classmethod
    def _no_annotations(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise _refused("a content part with annotations", "annotations")
        return value


class MessageItem(StrictBody):
    """A message: `{"role", "content"}`, content a string or text parts."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[TextPart]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else None
                kind = kind if isinstance(kind, str) else None  # a type that is no string is no part's
                if kind in _UNSUPPORTED_PARTS:
                    raise _refused(f"{_UNSUPPORTED_PARTS[kind]} ({kind!r} content parts)", "content")
                if kind not in _TEXT_PARTS:
                    raise PydanticCustomError(
                        "value_error.content_part",
                        "only text content parts ({'type': 'input_text', 'text': '...'}) are supported",
                    )
        return value

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionCallItem(StrictBody):
    """A call the model made, sent back in the history: its call_id, name and arguments (JSON text)."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(pattern=_NAME)
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(StrictBody):
    """What a call returned: its call_id and output (a string, or text parts)."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[TextPart]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None

    def text(self) -> str:
        """The output as one string."""
        if isinstance(self.output, str):
            return self.output
        return "".join(part.text for part in self.output)


def _item_type(value: Any) -> str | None:
    """An input item's type: a message may leave `type` out (OpenAI's EasyInputMessage)."""
    if isinstance(value, dict):
        kind = value.get("type", "message")
        return kind if isinstance(kind, str) else None
    if isinstance(value, StrictBody):
        return str(getattr(value, "type", None))
    return None


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_type),
]
_ITEM_TYPES = ("message", "function_call", "function_call_output")


class FunctionTool(StrictBody):
    """A function tool, in the Responses API's flat shape."""

    type: Literal["function"]
    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # enforced either way: arguments always follow the schema


class NamedFunction(StrictBody):
    """`{"type": "function", "name": ...}`: this function must be called."""

    type: Literal["function"]
    name: str


ToolChoice = Literal["none", "auto", "required"] | NamedFunction


class TextFormatText(StrictBody):
    """`{"type": "text"}`: free text (the default)."""

    type: Literal["text"]


class TextFormatJsonObject(StrictBody):
    """`{"type": "json_object"}`: one JSON object."""

    type: Literal["json_object"]


class TextFormatJsonSchema(StrictBody):
    """`{"type": "json_schema", "name", "schema", "strict"}`: JSON valid against the schema."""

    type: Literal["json_schema"]
    name: str = Field(pattern=_NAME)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None  # enforced either way


TextFormat = Annotated[TextFormatText | TextFormatJsonObject | TextFormatJsonSchema, Field(discriminator="type")]


class TextConfig(StrictBody):
    """`text`: the output's format."""

    format: TextFormat | None = None
    verbosity: Literal["medium"] | None = None  # the only verbosity these models have


class StreamOptions(StrictBody):
    """`stream_options`: OpenAI pads stream events against size side channels; no padding is sent."""

    include_obfuscation: bool | None = None


# OpenAI fields these models or this server do not have: refused by name unless absent or empty.
_FEATURES = {
    "reasoning": "reasoning (these models do not reason before answering)",
    "include": "extra output (`include`)",
    "background": "background responses",
    "conversation": "conversations (continue with previous_response_id)",
    "prompt": "stored prompt templates",
    "top_logprobs": "logprobs",
    "context_management": "context management",
}


# What _absent lets through, for the OpenAPI document: nothing asked for.
_NOTHING_ASKED = WithJsonSchema({"anyOf": [*NOTHING, {"const": False}, {"const": 0}]})

# What building.structure accepts across fields (chat's STRUCTURE_RULE with text.format for
# response_format), for the OpenAPI document. A named tool_choice not among the tools, or tool
# names that repeat, are refused too; JSON Schema cannot say so.
_ASKS_NO_CALL = {"enum": ["none", "auto", None]}
_NO_TOOLS = {"anyOf": [NULL, {"type": "array", "maxItems": 0}]}
_TEXT_OUT = {
    "anyOf": [NULL, {"properties": {"format": {"anyOf": [NULL, {"properties": {"type": {"const": "text"}}}]}}}]
}
_STRUCTURE_RULE: dict[str, Any] = {
    "anyOf": [
        # No tools, and tool_choice asks for no call.
        {"properties": {"tool_choice": _ASKS_NO_CALL, "tools": _NO_TOOLS}},
        # tool_choice "none": the tools are not shown, any text.format.
        {"properties": {"tool_choice": {"const": "none"}}, "required": ["tool_choice"]},
        # tool_choice asks for no call, and the output is text.
        {"properties": {"tool_choice": _ASKS_NO_CALL, "text": _TEXT_OUT}},
        # Tools, and the output is text (or a call).
        {"properties": {"tools": {"type": "array", "minItems": 1}, "text": _TEXT_OUT}, "required": ["tools"]},
    ]
}


def _document_rules(schema: dict[str, Any]) -> None:
    """The checks across fields that building the inference request makes (400s), for the document."""
    schema["allOf"] = [*schema.get("allOf", []), _STRUCTURE_RULE]


class _Asked(StrictBody):
    """What a Responses request asks, as a verification sends it again too: its input and structure fields."""

    model_config = ConfigDict(json_schema_extra=_document_rules)

    input: str | Annotated[list[InputItem], Field(min_length=1)]
    instructions: str | None = None
    previous_response_id: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None  # accepted: Llama 3.2 makes one call per turn either way
    text: TextConfig | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _known_items(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                kind = _item_type(item)
                if isinstance(item, dict) and kind not in _ITEM_TYPES:
                    what = "item references" if kind == "item_reference" else f"input items of type {kind!r}"
                    raise _refused(f"{what} (only messages, function_call and function_call_output items are)", "input")
                content = item.get("content") if isinstance(item, dict) else None
                for part in content if isinstance(content, list) else []:
                    part_kind = part.get("type") if isinstance(part, dict) else None
                    if isinstance(part_kind, str) and part_kind in _UNSUPPORTED_PARTS:
                        raise _refused(f"{_UNSUPPORTED_PARTS[part_kind]} ({part_kind!r} content parts)", "input")
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _function_tools(cls, value: Any) -> Any:
        for tool in value if isinstance(value, list) else []:
            kind = tool.get("type") if isinstance(tool, dict) else None
            if isinstance(kind, str) and kind != "function":
                raise PydanticCustomError(
                    "value_error.unsupported",
                    f"the built-in tool {kind!r} is not available on this server; only function tools "
                    "({'type': 'function', 'name': ..., 'parameters': {...}}) are",
                )
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _function_choice(cls, value: Any) -> Any:
        kind = value.get("type") if isinstance(value, dict) else None
        if isinstance(kind, str) and kind != "function":
            raise PydanticCustomError(
                "value_error.unsupported",
                f"tool_choice of type {kind!r} is not available on this server; send 'none', 'auto', "
                "'required' or {'type': 'function', 'name': ...}",
            )
        return value


class CreateResponse(_Asked):
    """POST /v1/responses."""

    model: str = Field(min_length=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    user: str | None = None
    store: bool | None = None
    truncation: Literal["disabled"] | None = None  # a prompt that does not fit is a 400, never cut
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # Accepted because they cannot change the output.
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)  # at most one call per turn either way
    # Refused unless absent or empty (_FEATURES).
    reasoning: Annotated[Any, _NOTHING_ASKED] = None
    include: Annotated[Any, _NOTHING_ASKED] = None
    background: Annotated[Any, _NOTHING_ASKED] = None
    conversation: Annotated[Any, _NOTHING_ASKED] = None
    prompt: Annotated[Any, _NOTHING_ASKED] = None
    top_logprobs: Annotated[Any, _NOTHING_ASKED] = None
    context_management: Annotated[Any, _NOTHING_ASKED] = None
    # Not OpenAI: keep generating past end-of-generation tokens, to max_output_tokens (benchmarks, tests).
    ignore_eos: bool = False

    @field_validator("truncation", mode="before")
    @classmethod
    def _never_truncated(cls, value: Any) -> Any:
        if value == "auto":
            raise PydanticCustomError(
                "value_error.unsupported",
                "truncation 'auto' is not available: a prompt is never cut here (one that does not fit is a 400); "
                "send 'disabled' or omit it",
            )
        return value

    @field_validator(
        "reasoning", "include", "background", "conversation", "prompt", "top_logprobs", "context_management"
    )
    @classmethod
    def _absent(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in (None, [], {}, False, 0):
            raise _refused(_FEATURES[info.field_name or ""], info.field_name or "")
        return value

    def has_schemas(self) -> bool:
        """Whether building its inference request compiles JSON schemas into grammars (tools, text.format)."""
        fmt = self.text.format if self.text else None
        return bool(self.tools) or isinstance(fmt, TextFormatJsonObject | TextFormatJsonSchema)

    def items(self) -> list[InputItem]:
        """`input` as items: a string is one user message."""
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)


# What a Responses request's input commitment hashes: these fields of its body, exactly as sent (a
# continuation commits to the id of the response it continues, whose own record covers that one).
COMMITTED_FIELDS = ("instructions", "input", "previous_response_id")


def committed_input(raw: dict[str, Any]) -> dict[str, Any]:
    """What the commitment hashes: the body's instructions, input and previous_response_id, exactly as sent."""
    return {name: raw[name] for name in COMMITTED_FIELDS if name in raw}


class ResponsesVerifyRequest(_Asked):
    """POST /v1/requests/{id}/verify for a /v1/responses request: its input as sent, the output received.

    Its tools, tool_choice, parallel_tool_calls and text as sent too: the record keeps only their
    SHA-256, a replay needs them."""

    output: str = Field(description="the text the response carried (a function call: the call as the model wrote it)")
    replay: bool = Field(default=True, description="re-run deterministic requests and compare")

    def as_request(self) -> CreateResponse:
        """The request it describes, as far as a replay needs it (its budget comes from the record)."""
        # Its fields are validated already, as CreateResponse validates them.
        return CreateResponse.model_construct(
            model="-",
            input=self.input,
            instructions=self.instructions,
            previous_response_id=self.previous_response_id,
            tools=self.tools,
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            text=self.text,
        )
