"""Anthropic Messages request bodies, validated as Anthropic validates them (ranges, required fields); what
these models cannot do is refused by name."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from pinaivu_local.api.anthropic.blocks import TOOL_NAME, Message, TextBlock, block_type, or_text, text_blocks
from pinaivu_local.api.anthropic.messages import conversation, node_conversation
from pinaivu_local.api.flow.request import InferenceRequest
from pinaivu_local.api.flow.tool_structure import (
    CallMode,
    OutputStructure,
    ToolSpec,
    call_structure,
    structure_digest,
)
from pinaivu_local.api.http.validation import StrictBody
from pinaivu_local.engine.grammars import json_constraint
from pinaivu_local.engine.prepared import ChatPrompt
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.errors import InvalidRequest


class Tool(StrictBody):
    """A client tool: its name, what it does, its input's JSON schema."""

    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None

    def spec(self) -> ToolSpec:
        """The tool as the flow takes it (listed to the template as an OpenAI function)."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.input_schema}
        if self.description is not None:
            function["description"] = self.description
        return ToolSpec(self.name, self.input_schema, {"type": "function", "function": function})


class _Choice(StrictBody):
    # We emit at most one call a turn anyway (Llama 3.2's template takes one): accepted either way.
    disable_parallel_tool_use: bool | None = None


class AutoChoice(_Choice):
    """The model decides whether to call."""

    type: Literal["auto"]


class AnyChoice(_Choice):
    """The model must call one of the tools."""

    type: Literal["any"]


class NamedChoice(_Choice):
    """The model must call this tool."""

    type: Literal["tool"]
    name: str


class NoneChoice(StrictBody):
    """The model may not call: the tools are not shown to it."""

    type: Literal["none"]


ToolChoice = Annotated[AutoChoice | AnyChoice | NamedChoice | NoneChoice, Discriminator("type")]
_MODES: dict[str, CallMode] = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}


class JsonFormat(StrictBody):
    """`output_config.format`: the answer is JSON valid against `schema` (held to it by constrained decoding)."""

    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(StrictBody):
    """`output_config`: a JSON format is honoured; an effort level these models do not have is refused."""

    model_config = ConfigDict(populate_by_name=True)

    format: JsonFormat | None = None
    effort: Any = Field(default=None, description="refused unless null: these models have one effort level")

    @field_validator("effort")
    @classmethod
    def _one_effort(cls, value: Any) -> Any:
        if value is not None:
            raise PydanticCustomError(
                "value_error.unsupported",
                "effort levels are not available on these models (they have one); send output_config without effort",
            )
        return value


class Metadata(StrictBody):
    """`metadata`: who the end user is (recorded nowhere, changes no output)."""

    user_id: str | None = Field(default=None, max_length=256)


# Anthropic request fields we know and that need what these models or this server do not have.
_REFUSED_FIELDS = {
    "thinking": "extended thinking (these models do not think before answering)",
    "container": "code execution containers",
    "mcp_servers": "MCP servers",
    "context_management": "context management",
}


class MessagesRequest(StrictBody):
    """POST /v1/messages (and, without max_tokens, /v1/messages/count_tokens)."""

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: list[TextBlock] | None = Field(default=None, json_schema_extra=or_text)  # a string: one text block
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: Metadata | None = None
    stream: bool | None = None
    output_config: OutputConfig | None = None
    # Accepted because they cannot change the output: every prompt is cached (cache_control), the answer is
    # computed here (inference_geo, service_tier), no diagnostics are returned, the ids are only recorded nowhere.
    cache_control: dict[str, Any] | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: str | None = None
    diagnostics: dict[str, Any] | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None
    speed: Literal["standard"] | None = Field(default=None, description="only standard: no faster mode here")
    # Refused by name unless absent (or thinking disabled).
    thinking: dict[str, Any] | None = None
    container: Any = None
    mcp_servers: Any = None
    context_management: Any = None

    @field_validator("system", mode="before")
    @classmethod
    def _system_blocks(cls, value: Any) -> Any:
        return text_blocks(value)

    @field_validator("tools", mode="before")
    @classmethod
    def _client_tools(cls, value: Any) -> Any:
        for tool in value if isinstance(value, list) else ():
            kind = block_type(tool)
            if kind not in (None, "custom"):
                raise PydanticCustomError(
                    "value_error.unsupported",
                    f"the server tool {kind!r} is not available here (no server tools run on pinaivu-local); "
                    "define a client tool with name, description and input_schema instead",
                )
        return value

    @field_validator("thinking", "container", "mcp_servers", "context_management")
    @classmethod
    def _absent(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (info.field_name == "thinking" and value == {"type": "disabled"}):
            return value
        raise PydanticCustomError(
            "value_error.unsupported",
            f"{_REFUSED_FIELDS[info.field_name or '']} is not available on pinaivu-local; "
            f"send the request without `{info.field_name}`",
        )

    def has_schemas(self) -> bool:
        """Whether building its inference request compiles schemas into a grammar (tools, output_config)."""
        return bool(self.tools) or self.output_config is not None

    def structure(self) -> OutputStructure:
        """The tools, tool_choice and output format as the engine takes them."""
        choice = self.tool_choice
        mode = _MODES[choice.type] if choice is not None else "auto"
        named = choice.name if isinstance(choice, NamedChoice) else None
        specs = [tool.spec() for tool in self.tools or []]
        structure = call_structure(specs, mode, named)
        json_format = self.output_config.format if self.output_config else None
        if json_format is None:
            return structure or OutputStructure()
        if structure is not None:
            raise InvalidRequest(
                "output_config.format cannot be combined with tools here: send one or the other "
                '(or tool_choice {"type": "none"} to answer in the format without calling).',
                param="output_config",
            )
        return OutputStructure(constraint=json_constraint(json_format.schema_, param="output_config.format"))

    def structure_fields(self) -> dict[str, Any]:
        """tools, tool_choice and output_config as sent (what a replay needs; the record keeps their SHA-256)."""
        return self.model_dump(include={"tools", "tool_choice", "output_config"}, exclude_none=True, by_alias=True)

    def prompt(self, structure: OutputStructure) -> ChatPrompt:
        """The conversation as the chat template takes it, with the tools it may call."""
        return ChatPrompt(conversation(self.system, self.messages), structure.template_tools)

    def inference_request(self, committed_input: dict[str, Any]) -> InferenceRequest:
        """The request as the inference flow takes it; `committed_input`: its system and messages as sent."""
        structure = self.structure()
        return InferenceRequest(
            kind="messages",
            model=self.model,
            source=self.prompt(structure),
            sampling=SamplingParams(
                temperature=1.0 if self.temperature is None else self.temperature,
                top_p=1.0 if self.top_p is None else self.top_p,
                top_k=self.top_k,
                stop=tuple(s for s in self.stop_sequences or () if s),
            ),
            max_tokens=self.max_tokens,
            committed_input=committed_input,
            node_messages=node_conversation(self.system, self.messages),
            constraint=structure.constraint,
            tool_names=structure.tool_names,
            structure_digest=structure_digest(self.structure_fields()),
            node_fields=self.node_fields(),
        )

    def node_fields(self) -> dict[str, Any] | None:
        """tools, tool_choice and output_config.format in OpenAI chat's shapes, as a gateway's nodes take them."""
        fields: dict[str, Any] = {}
        if self.tools:
            fields["tools"] = [tool.spec().template for tool in self.tools]
        choice = self.tool_choice
        if isinstance(choice, NamedChoice):
            fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif choice is not None:
            fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
        if isinstance(choice, _Choice) and choice.disable_parallel_tool_use is not None:
            fields["parallel_tool_calls"] = not choice.disable_parallel_tool_use
        json_format = self.output_config.format if self.output_config else None
        if json_format is not None:
            spec = {"name": "output", "schema": json_format.schema_}
            fields["response_format"] = {"type": "json_schema", "json_schema": spec}
        return fields or None


class CountTokensRequest(MessagesRequest):
    """POST /v1/messages/count_tokens: the same input, no output asked for."""

    max_tokens: int = Field(default=1, ge=1)  # Anthropic's count_tokens has none; a count reserves nothing


def committed_input(raw: dict[str, Any]) -> dict[str, Any]:
    """What the commitment hashes: the body's `system` (when sent) and `messages`, exactly as sent."""
    return {name: raw[name] for name in ("system", "messages") if name in raw}


class MessagesVerifyRequest(StrictBody):
    """POST /v1/requests/{id}/verify for a /v1/messages request: its input as sent, the output received."""

    system: list[TextBlock] | None = Field(default=None, json_schema_extra=or_text)  # a string: one text block
    messages: list[Message] = Field(min_length=1)
    output: str = Field(description="the text the message carried (a tool call: the call as the model wrote it)")
    replay: bool = Field(default=True, description="re-run deterministic requests and compare")
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    output_config: OutputConfig | None = None

    @field_validator("system", mode="before")
    @classmethod
    def _system_blocks(cls, value: Any) -> Any:
        return text_blocks(value)

    def as_request(self) -> MessagesRequest:
        """The request it describes, as far as a replay needs it (its budget comes from the record)."""
        # Its fields are validated already, as MessagesRequest validates them.
        return MessagesRequest.model_construct(
            model="-",
            max_tokens=1,
            system=self.system,
            messages=self.messages,
            tools=self.tools,
            tool_choice=self.tool_choice,
            output_config=self.output_config,
        )
