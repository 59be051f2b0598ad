"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from pinaivu_local.api.flow.inference import Inference
from pinaivu_local.api.http.context import context_of
from pinaivu_local.api.http.openapi import error_responses, json_body
from pinaivu_local.api.http.stream_pacing import STREAM_INTERVAL_PARAMETER, requested_interval_s
from pinaivu_local.api.http.validation import in_proportion, read_body
from pinaivu_local.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from pinaivu_local.api.openai.serving import respond


@post(
    "/chat/completions",
    status_code=200,
    summary="Create a chat completion",
    operation_class=json_body(ChatCompletionRequest, headers=(STREAM_INTERVAL_PARAMETER,)),
    responses=error_responses(400, 401, 403, 404, 408, 422, 429, 500, 503),
)
async def chat_completions(request: Request[Any, Any, Any], inference: NamedDependency[Inference]) -> Response[Any]:
    """Answer a conversation, whole or as a stream of chunks."""
    return await _complete(request, inference, ChatCompletionRequest)


@post(
    "/completions",
    status_code=200,
    summary="Create a text completion",
    operation_class=json_body(CompletionRequest, headers=(STREAM_INTERVAL_PARAMETER,)),
    responses=error_responses(400, 401, 403, 404, 408, 422, 429, 500, 503),
)
async def completions(request: Request[Any, Any, Any], inference: NamedDependency[Inference]) -> Response[Any]:
    """Continue a prompt, whole or as a stream of chunks."""
    return await _complete(request, inference, CompletionRequest)


async def _complete(
    request: Request[Any, Any, Any],
    inference: Inference,
    schema: type[ChatCompletionRequest] | type[CompletionRequest],
) -> Response[Any]:
    # The request's context is read here, not injected: Litestar resolves two dependencies of one
    # level in a task group of their own, which costs more than the whole key lookup.
    context = context_of(request.scope)
    principal = context.caller()
    admission = await inference.take_request(principal)  # counted before parsing what may be megabytes
    interval = requested_interval_s(request.headers)
    body = await read_body(request, schema)
    size = len(await request.body())  # read once: Litestar keeps it
    # Building the request decodes every call's arguments and compiles tools' and response_format's
    # schemas into grammars, in proportion to the input.
    built = await in_proportion(size, body.inference_request, costly=body.has_schemas())
    asked = replace(built, streamed=bool(body.stream), text_interval_s=interval, body_bytes=size)
    context.model_id = inference.resolve(asked.model)
    run = context.run = await inference.start(principal, asked, admission)
    return await respond(request, run, stream=bool(body.stream))
