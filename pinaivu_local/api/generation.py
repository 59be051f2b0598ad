"""The flow both completion endpoints share.

Checks run in the contract's order: (authentication in the guard, validation by the caller,)
model resolution, permission, context budget, rate limit, capacity; then the answer as one
JSON body or an SSE stream. A reservation is settled to the tokens really used at the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import Request, Response
from litestar.response import Stream

from pinaivu_local.api.auth import Principal
from pinaivu_local.api.error_rendering import error_body
from pinaivu_local.api.openai_shapes import SSE_DONE, Completion, Kind, sse
from pinaivu_local.api.schemas import ChatCompletionRequest, CompletionRequest
from pinaivu_local.engine.model_pool import ModelEngine, ModelPool
from pinaivu_local.engine.results import FinishReason, Usage
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import GenerationStream
from pinaivu_local.errors import PinaivuError, Unavailable
from pinaivu_local.ratelimit import RateLimiter, Reservation

log = logging.getLogger(__name__)


def sampling_params(body: ChatCompletionRequest | CompletionRequest, engine: ModelEngine) -> SamplingParams:
    """The request's sampling fields, OpenAI's defaults where absent."""
    bias = {int(token): value for token, value in (body.logit_bias or {}).items()}
    engine.check_logit_bias(bias)
    return SamplingParams(
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stop_strings(),
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias=bias,
    )


async def serve_generation(
    request: Request[Any, Any, Any],
    body: ChatCompletionRequest | CompletionRequest,
    kind: Kind,
    build_prompt: Callable[[ModelEngine], list[int]],
    requested_tokens: int | None,
) -> Response[Any]:
    """Resolve, check, admit and run one completion request."""
    pool: ModelPool = request.app.state.pool
    limiter: RateLimiter = request.app.state.limiter
    principal: Principal = request.state.principal
    engine = pool.get(body.model)
    principal.check_model(engine.id)
    params = sampling_params(body, engine)
    prompt = build_prompt(engine)
    param = "messages" if kind == "chat" else "prompt"
    max_tokens = engine.completion_budget(len(prompt), requested_tokens, param)
    reservation = limiter.admit(principal.key_id, principal.limits, len(prompt) + max_tokens)
    try:
        generation = engine.start(prompt, params, max_tokens)
    except Unavailable:
        reservation.cancel()  # never ran: costs no quota
        raise
    completion = Completion(kind, engine.id, include_usage=bool(body.stream) and body.include_usage())
    headers = {"x-request-id": completion.request_id}
    if body.stream:
        return Stream(
            _sse_events(generation, completion, reservation),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    try:
        text, finish, usage = await _collect_unless_disconnected(request, generation)
    finally:
        reservation.settle(generation.tokens_used)
    return Response(completion.body(text, finish, usage), headers=headers)


async def _collect(generation: GenerationStream) -> tuple[str, FinishReason, Usage]:
    """All deltas folded into one: the whole text, the finish reason and usage."""
    parts: list[str] = []
    async for delta in generation:
        parts.append(delta.text)
        if delta.finish_reason and delta.usage:
            return "".join(parts), delta.finish_reason, delta.usage
    raise RuntimeError("generation ended without a finish reason")


async def _collect_unless_disconnected(
    request: Request[Any, Any, Any], generation: GenerationStream
) -> tuple[str, FinishReason, Usage]:
    """Collect, but stop generating as soon as the client goes away."""
    work = asyncio.ensure_future(_collect(generation))
    watch = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        raise asyncio.CancelledError("client disconnected")
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
        generation.close()


async def _wait_disconnect(request: Request[Any, Any, Any]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _sse_events(
    generation: GenerationStream, completion: Completion, reservation: Reservation
) -> AsyncIterator[str]:
    """The SSE stream: role chunk, text chunks, finish chunk, usage chunk if asked, [DONE]."""
    try:
        if completion.kind == "chat":
            yield completion.chunk("", first=True)
        async for delta in generation:
            if delta.finish_reason is None:
                yield completion.chunk(delta.text)
                continue
            if delta.text:
                yield completion.chunk(delta.text)
            yield completion.chunk(None, delta.finish_reason)
            if completion.include_usage and delta.usage:
                yield completion.usage_chunk(delta.usage)
        yield SSE_DONE
    except PinaivuError as exc:  # the status line is gone: report in-band, as OpenAI does
        log.warning("stream %s failed: %s", completion.request_id, exc.message)
        yield sse(error_body(exc.message, "server_error", code=exc.code))
    finally:
        generation.close()
        reservation.settle(generation.tokens_used)
