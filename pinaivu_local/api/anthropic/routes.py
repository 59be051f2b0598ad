"""POST /v1/messages and POST /v1/messages/count_tokens, as Anthropic's SDK calls them.

The headers `anthropic-version` and `anthropic-beta` are accepted whatever they say: the body's fields
are what is validated, and a beta feature's field that these models cannot honour is refused by name.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from pinaivu_local.api.anthropic.protocol import CountTokensRequest, MessagesRequest, committed_input
from pinaivu_local.api.anthropic.serving import respond
from pinaivu_local.api.flow.inference import Inference
from pinaivu_local.api.http.context import context_of
from pinaivu_local.api.http.error_rendering import ANTHROPIC_ERRORS
from pinaivu_local.api.http.openapi import error_responses, json_body
from pinaivu_local.api.http.stream_pacing import STREAM_INTERVAL_PARAMETER, requested_interval_s
from pinaivu_local.api.http.validation import in_proportion, read_body


@post(
    "/messages",
    status_code=200,
    summary="Create a message (Anthropic's Messages API)",
    operation_class=json_body(MessagesRequest, headers=(STREAM_INTERVAL_PARAMETER,)),
    responses=error_responses(400, 401, 403, 404, 408, 413, 429, 500, 503, anthropic=True),
    opt=ANTHROPIC_ERRORS,
)
async def create_message(request: Request[Any, Any, Any], inference: NamedDependency[Inference]) -> Response[Any]:
    """Answer a conversation, whole or as Anthropic's event stream."""
    context = context_of(request.scope)
    principal = context.caller()
    admission = await inference.take_request(principal)  # counted before parsing what may be megabytes
    interval = requested_interval_s(request.headers)
    body = await read_body(request, MessagesRequest)
    raw = await request.body()  # read once: Litestar keeps it
    # Building it decodes the input again as sent (the commitment) and compiles tools' schemas.
    built = await in_proportion(
        len(raw), lambda: body.inference_request(committed_input(json.loads(raw))), costly=body.has_schemas()
    )
    asked = replace(built, streamed=bool(body.stream), text_interval_s=interval, body_bytes=len(raw))
    context.model_id = inference.resolve(asked.model)
    run = context.run = await inference.start(principal, asked, admission)
    return await respond(request, run, stream=bool(body.stream))


@post(
    "/messages/count_tokens",
    status_code=200,
    summary="Count a message's input tokens (Anthropic's Messages API)",
    operation_class=json_body(CountTokensRequest),
    responses=error_responses(400, 401, 403, 404, 408, 413, 429, 500, 503, anthropic=True),
    opt=ANTHROPIC_ERRORS,
)
async def count_tokens(request: Request[Any, Any, Any], inference: NamedDependency[Inference]) -> dict[str, int]:
    """The input's tokens, system, messages and tools rendered exactly as /v1/messages renders them.

    Counted against the key's requests limit like every inference route (tokenizing is work); it reserves
    no tokens, runs nothing and leaves no record.
    """
    context = context_of(request.scope)
    principal = context.caller()
    await inference.take_request(principal)
    body = await read_body(request, CountTokensRequest)
    raw = await request.body()
    built = await in_proportion(len(raw), lambda: body.inference_request({}), costly=body.has_schemas())
    context.model_id = inference.resolve(built.model)
    return {"input_tokens": await inference.count(principal, replace(built, body_bytes=len(raw)))}
