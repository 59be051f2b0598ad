"""POST /v1/responses; GET and DELETE /v1/responses/{id}; GET /v1/responses/{id}/input_items."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from typing import Any, Literal

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from pinaivu_local.api.flow.inference import Inference
from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.api.flow.request import InferenceRequest
from pinaivu_local.api.http.context import context_of
from pinaivu_local.api.http.openapi import error_responses, json_body
from pinaivu_local.api.http.stream_pacing import STREAM_INTERVAL_PARAMETER, requested_interval_s
from pinaivu_local.api.http.validation import in_proportion, read_body
from pinaivu_local.api.responses.building import inference_request
from pinaivu_local.api.responses.items import conversation, stored_items
from pinaivu_local.api.responses.protocol import CreateResponse, committed_input
from pinaivu_local.api.responses.serving import Answer, respond
from pinaivu_local.api.responses.shapes import ResponseObject, echoed, new_response_id
from pinaivu_local.api.responses.store import ResponseStore, StoredResponse
from pinaivu_local.errors import InvalidRequest, ResponseNotFound

MAX_PAGE = 100


def _not_found(response_id: str, param: str | None = None) -> ResponseNotFound:
    return ResponseNotFound(
        f"No stored response {response_id!r} for this key. Response ids come from the `id` of a response "
        "made with `store` (the default) by the same key, and are kept as long as the request log.",
        param=param,
    )


@post(
    "/responses",
    status_code=200,
    summary="Create a response",
    operation_class=json_body(CreateResponse, headers=(STREAM_INTERVAL_PARAMETER,)),
    responses=error_responses(400, 401, 403, 404, 408, 422, 429, 500, 503),
)
async def create_response(
    request: Request[Any, Any, Any],
    inference: NamedDependency[Inference],
    responses: NamedDependency[ResponseStore],
) -> Response[Any]:
    """Answer an input (continuing a stored response, with previous_response_id), whole or as a stream of events."""
    context = context_of(request.scope)
    principal = context.caller()
    admission = await inference.take_request(principal)  # counted before parsing what may be megabytes
    interval = requested_interval_s(request.headers)
    body = await read_body(request, CreateResponse)
    raw = await request.body()  # read once: Litestar keeps it
    size = len(raw)
    history: list[dict[str, Any]] = []
    if body.previous_response_id is not None:
        chain = await responses.chain(body.previous_response_id, principal.key_id)
        if chain is None:
            raise _not_found(body.previous_response_id, "previous_response_id")
        history = [item for stored in chain for item in stored.inputs() + stored.outputs()]
    inputs = stored_items(body.items())
    # Building decodes every call's arguments and compiles tools' and text.format's schemas into grammars.
    built = await in_proportion(size, functools.partial(_build, body, history, inputs, raw), costly=body.has_schemas())
    asked = replace(built, streamed=bool(body.stream), text_interval_s=interval, body_bytes=size)
    context.model_id = inference.resolve(asked.model)
    run = context.run = await inference.start(principal, asked, admission)
    answer = Answer(
        ResponseObject(new_response_id(), run.identity, echoed(body)),
        principal.key_id,
        inputs,
        None if body.store is False else responses,
    )
    return await respond(request, run, answer, stream=bool(body.stream))


def _build(
    body: CreateResponse, history: list[dict[str, Any]], inputs: list[dict[str, Any]], raw: bytes
) -> InferenceRequest:
    # The commitment is to the input as sent, which a client can show again at verification.
    committed = committed_input(json.loads(raw))
    return inference_request(body, conversation(body.instructions, history + inputs), committed)


async def _stored(responses: ResponseStore, principal: Principal, response_id: str) -> StoredResponse:
    found = await responses.get(response_id, principal.key_id)
    if found is None:
        raise _not_found(response_id)
    return found


@get("/responses/{response_id:str}", summary="A stored response", responses=error_responses(401, 404))
async def get_response(
    responses: NamedDependency[ResponseStore], principal: NamedDependency[Principal], response_id: FromPath[str]
) -> dict[str, Any]:
    """The response object as it was answered; only the key that made it sees it."""
    return (await _stored(responses, principal, response_id)).body()


@delete(
    "/responses/{response_id:str}",
    status_code=200,
    summary="Delete a stored response",
    responses=error_responses(401, 404),
)
async def delete_response(
    responses: NamedDependency[ResponseStore], principal: NamedDependency[Principal], response_id: FromPath[str]
) -> dict[str, Any]:
    """Forget a stored response (a later previous_response_id to it, or to one after it, is a 404)."""
    if not await responses.delete(response_id, principal.key_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@get(
    "/responses/{response_id:str}/input_items",
    summary="The input items of a stored response",
    responses=error_responses(400, 401, 404),
)
async def list_input_items(
    responses: NamedDependency[ResponseStore],
    principal: NamedDependency[Principal],
    response_id: FromPath[str],
    limit: FromQuery[int] = 20,
    order: FromQuery[Literal["asc", "desc"]] = "desc",
    after: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """Its own input items (not those of the responses before it), newest first unless `order=asc`."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
    items = (await _stored(responses, principal, response_id)).inputs()
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item {after!r} in this response.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
