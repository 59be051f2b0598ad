"""The explorer API: look a request up by request_id, list recent ones, verify a result."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from pydantic import ConfigDict, Field

from pinaivu_local.api.anthropic.protocol import MessagesVerifyRequest, committed_input
from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.api.http.context import RequestContext
from pinaivu_local.api.http.openapi import error_responses, json_body
from pinaivu_local.api.http.validation import StrictBody, in_proportion, read_body
from pinaivu_local.api.openai.messages import ChatMessage, template_messages
from pinaivu_local.api.openai.replay import Replayer
from pinaivu_local.api.openai.structured import (
    OutputStructure,
    ResponseFormat,
    Tool,
    ToolChoice,
    document_structure_rule,
    output_structure,
    structure_digest,
)
from pinaivu_local.api.responses.building import structure as responses_structure
from pinaivu_local.api.responses.building import structure_fields
from pinaivu_local.api.responses.items import conversation, stored_items
from pinaivu_local.api.responses.protocol import ResponsesVerifyRequest
from pinaivu_local.api.responses.protocol import committed_input as responses_committed_input
from pinaivu_local.api.responses.store import ResponseStore
from pinaivu_local.engine.prepared import ChatPrompt, PromptSource, TextPrompt, TokenPrompt
from pinaivu_local.errors import InvalidRequest, RequestNotFound
from pinaivu_local.requestlog.commitment import input_digest, output_digest
from pinaivu_local.requestlog.log import RequestLog
from pinaivu_local.requestlog.records import RequestRecord

MAX_PAGE = 100
# A listing's records add up to at most this many bytes of JSON (a record is a few KB at most, and
# listings leave out stored content): a page that would be larger stops early, with has_more.
MAX_PAGE_BYTES = 256 * 1024


class VerifyRequest(StrictBody):
    """What the caller holds: the input it sent and the output it received."""

    messages: list[ChatMessage] | None = None
    prompt: str | list[int] | None = None
    output: str = Field(description="the text the response carried (a tool call: the call as the model wrote it)")
    replay: bool = Field(default=True, description="re-run deterministic requests and compare")
    # A chat request's structure fields, as sent: the record keeps only their SHA-256, a replay needs them.
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    model_config = ConfigDict(json_schema_extra=document_structure_rule)

    def structure(self) -> tuple[OutputStructure, str | None]:
        """The structure fields as the engine takes them, and their digest."""
        fields = self.model_dump(
            include={"tools", "tool_choice", "parallel_tool_calls", "response_format"}, exclude_none=True, by_alias=True
        )
        return output_structure(self.tools, self.tool_choice, self.response_format), structure_digest(fields)


async def _visible(request_log: RequestLog, principal: Principal, request_id: str) -> RequestRecord:
    """The record if the caller may see it; 404 otherwise, whether or not it exists."""
    record = await request_log.call(request_log.get, request_id)
    if record is None or not (principal.admin or record.key_id == principal.key_id):
        raise RequestNotFound(
            f"No request {request_id!r} for this key. Request ids come from the `request_id` field "
            "or the x-request-id header of a successful response.",
            param="request_id",
        )
    return record


@get(
    "/requests/{request_id:str}",
    summary="Look a request up by its request_id",
    responses=error_responses(400, 401, 404),
)
async def get_request(
    request_log: NamedDependency[RequestLog], principal: NamedDependency[Principal], request_id: FromPath[str]
) -> dict[str, Any]:
    """A key sees its own requests; an admin key sees all."""
    return (await _visible(request_log, principal, request_id)).public()


@get(
    "/requests",
    summary="The caller's recent requests, newest first (admin: everyone's)",
    responses=error_responses(400, 401),
)
async def list_requests(
    request_log: NamedDependency[RequestLog],
    principal: NamedDependency[Principal],
    limit: FromQuery[int] = 20,
    model: FromQuery[str | None] = None,
    status: FromQuery[int | None] = None,
    before: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """Paginated with `before` (the `next_before` of the previous page)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
    try:
        cursor = datetime.fromisoformat(before.replace("Z", "+00:00")) if before else None
    except ValueError:
        raise InvalidRequest("before must be an ISO 8601 time, as in `next_before`.", param="before") from None
    page = await request_log.call(
        request_log.page,
        key_id=None if principal.admin else principal.key_id,
        limit=limit,
        model=model,
        status=status,
        before=cursor,
    )
    data: list[dict[str, Any]] = []
    size, has_more = 0, page.has_more
    for record in page.records:
        item = record.public(content=False)
        size += len(json.dumps(item))
        if data and size > MAX_PAGE_BYTES:
            has_more = True
            break
        data.append(item)
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "next_before": data[-1]["created_at"] if has_more and data else None,
    }


@post(
    "/requests/{request_id:str}/verify",
    status_code=200,
    summary="Check an input and output against the request's commitment",
    operation_class=json_body(VerifyRequest),
    responses=error_responses(400, 401, 404, 422, 500, 503),
)
async def verify_request(
    request: Request[Any, Any, Any],
    request_log: NamedDependency[RequestLog],
    replayer: NamedDependency[Replayer],
    context: NamedDependency[RequestContext],
    responses: NamedDependency[ResponseStore],
    request_id: FromPath[str],
) -> dict[str, Any]:
    """Hashes first; then, for a deterministic request (temperature 0 or a seed), a replay."""
    record = await _visible(request_log, context.caller(), request_id)
    if record.kind == "messages":  # an Anthropic Messages request: its input in Anthropic's shape
        return await _verify_message(request, replayer, context, record)
    if record.kind == "responses":  # an OpenAI Responses request: its input as items
        return await _verify_response(request, replayer, context, record, responses)
    body = await read_body(request, VerifyRequest)
    size = len(await request.body())  # read once: Litestar keeps it
    # Hashing the input, decoding call arguments and compiling schemas take time in proportion to the input.
    schemas = body.tools is not None or body.response_format is not None
    checked = await in_proportion(size, functools.partial(_checked, record, body), costly=schemas)
    result = checked.result
    if body.replay and result["verified"]:
        result["replay"] = await replayer.replay(
            context, record, checked.source, checked.held, body.output, checked.structure
        )
    return result


async def _verify_message(
    request: Request[Any, Any, Any], replayer: Replayer, context: RequestContext, record: RequestRecord
) -> dict[str, Any]:
    """verify_request for a /v1/messages request: system and messages (and tools) as sent to it."""
    body = await read_body(request, MessagesVerifyRequest)
    raw = await request.body()
    checked = await in_proportion(
        len(raw), functools.partial(_checked_message, record, body, raw), costly=body.tools is not None
    )
    result = checked.result
    if body.replay and result["verified"]:
        result["replay"] = await replayer.replay(
            context, record, checked.source, checked.held, body.output, checked.structure
        )
    return result


def _checked_message(record: RequestRecord, body: MessagesVerifyRequest, raw: bytes) -> _Checked:
    """Compare an Anthropic input and output with the record's commitment (the input exactly as sent)."""
    held = committed_input(json.loads(raw))
    asked = body.as_request()
    structure = asked.structure()
    digest = structure_digest(asked.structure_fields())
    given = any(f is not None for f in (body.tools, body.tool_choice, body.output_config))
    return _Checked(
        _verdict(record, input_digest(held), body.output, digest if given else _NOT_GIVEN),
        asked.prompt(structure),
        held,
        (structure, digest),
    )


async def _verify_response(
    request: Request[Any, Any, Any],
    replayer: Replayer,
    context: RequestContext,
    record: RequestRecord,
    responses: ResponseStore,
) -> dict[str, Any]:
    """verify_request for a /v1/responses request: instructions, input and previous_response_id as sent."""
    body = await read_body(request, ResponsesVerifyRequest)
    raw = await request.body()
    history: list[dict[str, Any]] | None = []
    if body.previous_response_id is not None:  # the conversation it continued, while it is stored
        chain = await responses.chain(body.previous_response_id, record.key_id)
        history = None if chain is None else [item for kept in chain for item in kept.inputs() + kept.outputs()]
    checked = await in_proportion(
        len(raw), functools.partial(_checked_response, record, body, raw, history), costly=body.tools is not None
    )
    result = checked.result
    if body.replay and result["verified"]:
        if history is None:
            result["replay"] = {
                "performed": False,
                "reason": f"the response it continued ({body.previous_response_id}) is no longer stored, so the "
                "conversation the model saw cannot be rebuilt",
            }
        else:
            result["replay"] = await replayer.replay(
                context, record, checked.source, checked.held, body.output, checked.structure, checked.node_messages
            )
    return result


def _checked_response(
    record: RequestRecord, body: ResponsesVerifyRequest, raw: bytes, history: list[dict[str, Any]] | None
) -> _Checked:
    """Compare a Responses input and output with the record's commitment (the input exactly as sent)."""
    held = responses_committed_input(json.loads(raw))
    asked = body.as_request()
    structure = responses_structure(asked)
    talk = conversation(asked.instructions, (history or []) + stored_items(asked.items()))
    digest = structure_digest(structure_fields(asked))
    given = any(f is not None for f in (body.tools, body.tool_choice, body.parallel_tool_calls, body.text))
    return _Checked(
        _verdict(record, input_digest(held), body.output, digest if given else _NOT_GIVEN),
        ChatPrompt(talk.template, structure.template_tools),
        held,
        (structure, digest),
        talk.node_messages,
    )


# A verification that sent none of the structure fields: they are not compared (structure_matches null).
_NOT_GIVEN = "not given"


def _verdict(record: RequestRecord, input_sha256: str, output: str, structure: str | None) -> dict[str, Any]:
    """The hashes compared; `structure` is the digest of the structure fields sent, None for none."""
    input_ok = input_sha256 == record.input_sha256
    output_ok = record.output_sha256 is not None and output_digest(output) == record.output_sha256
    # The record keeps the digest of the tools, tool_choice, ... the request was sent with (receipt v2 signs it).
    structure_ok = None if structure == _NOT_GIVEN else structure == record.sampling_params().get("structure_sha256")
    return {
        "object": "request.verification",
        "request_id": record.request_id,
        "input_matches": input_ok,
        "structure_matches": structure_ok,
        "output_matches": output_ok,
        "verified": input_ok and output_ok and structure_ok is not False,
        "replay": None,
    }


@dataclass(frozen=True)
class _Checked:
    """A verification's hashes compared, and what a replay of it would run."""

    result: dict[str, Any]
    source: PromptSource
    held: Any
    structure: tuple[OutputStructure, str | None]
    node_messages: Any = None  # the input as a gateway's nodes take it, where `held` has another API's shape


def _checked(record: RequestRecord, body: VerifyRequest) -> _Checked:
    """Compare the caller's input and output with the record's commitment."""
    source: PromptSource
    structure = body.structure()
    if record.kind == "chat":
        if body.messages is None:
            raise InvalidRequest("This was a chat request: send the `messages` you sent.", param="messages")
        held: Any = [m.model_dump(exclude_none=True) for m in body.messages]
        source = ChatPrompt(template_messages(body.messages), structure[0].template_tools)
    else:
        if body.prompt is None:
            raise InvalidRequest("This was a text completion: send the `prompt` you sent.", param="prompt")
        held = body.prompt
        source = TextPrompt(body.prompt) if isinstance(body.prompt, str) else TokenPrompt(body.prompt)
    given = any(f is not None for f in (body.tools, body.tool_choice, body.parallel_tool_calls, body.response_format))
    verdict = _verdict(record, input_digest(held), body.output, structure[1] if given else _NOT_GIVEN)
    return _Checked(verdict, source, held, structure)
