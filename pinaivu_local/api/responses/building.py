"""A validated Responses body and its history as the request the inference flow takes.

Tools, tool_choice and text.format go through chat's structured output (api/openai/structured.py):
the Responses API's flat function tools are OpenAI's chat tools in another shape, held to their
schemas by the same grammar.
"""

from __future__ import annotations

from typing import Any

from pinaivu_local.api.flow.request import InferenceRequest
from pinaivu_local.api.openai.structured import (
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
    OutputStructure,
    ResponseFormat,
    Tool,
    output_structure,
    structure_digest,
)
from pinaivu_local.api.openai.structured import ToolChoice as ChatToolChoice
from pinaivu_local.api.responses.items import Conversation
from pinaivu_local.api.responses.protocol import (
    CreateResponse,
    NamedFunction,
    TextFormatJsonObject,
    TextFormatJsonSchema,
)
from pinaivu_local.engine.prepared import ChatPrompt
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.errors import InvalidRequest

# Chat's field names in structured.py's errors, as this body names them.
_PARAMS = {"response_format": "text.format"}


def _chat_tools(body: CreateResponse) -> list[Tool]:
    """The body's flat function tools as chat's tools."""
    return [
        Tool.model_validate({"type": "function", "function": t.model_dump(exclude={"type"}, exclude_none=True)})
        for t in body.tools or []
    ]


def _chat_choice(body: CreateResponse) -> ChatToolChoice | None:
    """The body's tool_choice as chat's."""
    if isinstance(body.tool_choice, NamedFunction):
        return NamedToolChoice.model_validate({"type": "function", "function": {"name": body.tool_choice.name}})
    return body.tool_choice


def structure(body: CreateResponse) -> OutputStructure:
    """The template tools, constraint and callable tool names of the body's tools, tool_choice and text.format."""
    tools, choice = _chat_tools(body), _chat_choice(body)
    try:
        return output_structure(tools, choice, _response_format(body))
    except InvalidRequest as exc:
        param = _PARAMS.get(exc.param or "", exc.param)
        raise InvalidRequest(exc.message.replace("response_format", "text.format"), param=param) from None


def _response_format(body: CreateResponse) -> ResponseFormat | None:
    """text.format as chat's response_format (json_schema's fields nest under `json_schema` there)."""
    fmt = body.text.format if body.text else None
    if isinstance(fmt, TextFormatJsonSchema):
        spec = fmt.model_dump(exclude={"type"}, exclude_none=True, by_alias=True)
        return JsonSchemaFormat.model_validate({"type": "json_schema", "json_schema": spec})
    if isinstance(fmt, TextFormatJsonObject):
        return JsonObjectFormat(type="json_object")
    return None


def structure_fields(body: CreateResponse) -> dict[str, Any]:
    """tools, tool_choice, parallel_tool_calls and text as sent (what the record keeps the digest of)."""
    return body.model_dump(
        include={"tools", "tool_choice", "parallel_tool_calls", "text"}, exclude_none=True, by_alias=True
    )


def node_fields(body: CreateResponse) -> dict[str, Any] | None:
    """tools, tool_choice, parallel_tool_calls and text.format in OpenAI chat's shapes, as nodes take them."""
    fields: dict[str, Any] = {}
    if body.tools:
        fields["tools"] = [t.model_dump(exclude_none=True, by_alias=True) for t in _chat_tools(body)]
    choice = _chat_choice(body)
    if choice is not None:
        fields["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump(exclude_none=True)
    if body.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = body.parallel_tool_calls
    response_format = _response_format(body)
    if response_format is not None:
        fields["response_format"] = response_format.model_dump(exclude_none=True, by_alias=True)
    return fields or None


def inference_request(body: CreateResponse, talk: Conversation, committed: dict[str, Any]) -> InferenceRequest:
    """The conversation as the inference flow takes it, committed to as `committed` (protocol.committed_input)."""
    shaped = structure(body)
    return InferenceRequest(
        kind="responses",
        model=body.model,
        source=ChatPrompt(talk.template, shaped.template_tools),
        sampling=SamplingParams(
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            ignore_eos=body.ignore_eos,
        ),
        max_tokens=body.max_output_tokens,
        committed_input=committed,
        node_messages=talk.node_messages,
        constraint=shaped.constraint,
        tool_names=shaped.tool_names,
        structure_digest=structure_digest(structure_fields(body)),
        node_fields=node_fields(body),
    )
