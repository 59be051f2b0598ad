"""The flow both completion endpoints share: budget, queue, then a JSON body or an SSE stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response
from litestar.response import Stream

from pinaivu_local.api.error_rendering import error_body
from pinaivu_local.api.openai_shapes import SSE_DONE, Completion, sse
from pinaivu_local.api.schemas import ChatCompletionRequest, CompletionRequest
from pinaivu_local.engine.model_pool import ModelEngine
from pinaivu_local.engine.results import FinishReason, Usage
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import GenerationStream
from pinaivu_local.errors import PinaivuError

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
        ignore_eos=body.ignore_eos,
    )


async def respond(
    request: Request[Any, Any, Any],
    engine: ModelEngine,
    prompt: list[int],
    params: SamplingParams,
    max_tokens: int,
    completion: Completion,
    stream: bool,
) -> Response[Any]:
    """Queue the generation (503 here if the model is full), then answer in the asked shape."""
    generation = engine.start(prompt, params, max_tokens)
    headers = {"x-request-id": completion.request_id}
    if stream:
        return Stream(
            _sse_events(generation, completion),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    text, finish, usage = await _collect_unless_disconnected(request, generation)
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
        generation.close()
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


async def _sse_events(generation: GenerationStream, completion: Completion) -> AsyncIterator[str]:
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
