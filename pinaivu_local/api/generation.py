"""The flow both completion endpoints share.

Checks run in the contract's order: (authentication in the guard, validation by the caller,)
model resolution, permission, context budget, rate limit, capacity; then the answer as one
JSON body or an SSE stream. A reservation is settled to the tokens really used at the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Request, Response
from litestar.response import Stream

from pinaivu_local.api.auth import Principal
from pinaivu_local.api.error_rendering import error_body, status_of
from pinaivu_local.api.openai_shapes import SSE_DONE, Completion, Kind, sse
from pinaivu_local.api.request_trace import CLIENT_CLOSED, RequestTrace
from pinaivu_local.api.schemas import ChatCompletionRequest, CompletionRequest
from pinaivu_local.engine.model_pool import ModelEngine, ModelPool
from pinaivu_local.engine.results import FinishReason, Usage
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import GenerationStream
from pinaivu_local.errors import PinaivuError, Unavailable
from pinaivu_local.metrics import Metrics
from pinaivu_local.ratelimit import RateLimiter, Reservation
from pinaivu_local.requestlog.log import RequestLog

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


async def serve_generation(
    request: Request[Any, Any, Any],
    body: ChatCompletionRequest | CompletionRequest,
    kind: Kind,
    build_prompt: Callable[[ModelEngine], list[int]],
    requested_tokens: int | None,
    input_value: Any,
) -> Response[Any]:
    """Resolve, check, admit and run one completion request; log it when it ends."""
    state = request.app.state
    pool: ModelPool = state.pool
    limiter: RateLimiter = state.limiter
    principal: Principal = request.state.principal
    engine = pool.get(body.model)
    request.state.model_id = engine.id
    principal.check_model(engine.id)
    params = sampling_params(body, engine)
    prompt = build_prompt(engine)
    max_tokens = engine.completion_budget(len(prompt), requested_tokens, "messages" if kind == "chat" else "prompt")
    reservation = limiter.admit(principal.key_id, principal.limits, len(prompt) + max_tokens)
    try:
        generation = engine.start(prompt, params, max_tokens)
    except Unavailable:
        reservation.cancel()  # never ran: costs no quota
        raise
    completion = Completion(kind, engine.id, include_usage=bool(body.stream) and body.include_usage())
    request.state.request_id = completion.request_id
    trace = RequestTrace(
        completion, principal, engine.id, params, max_tokens, input_value, len(prompt), state.settings.log_content
    )
    run = _Run(generation, trace, reservation, state.request_log, engine.spec.file, state.metrics, request.state)
    headers = {"x-request-id": completion.request_id}
    if body.stream:
        return Stream(
            _sse_events(run),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    text, finish, usage = await _collect_unless_disconnected(request, run)
    return Response(completion.body(text, finish, usage), headers=headers)


@dataclass
class _Run:
    """A started generation and what must happen when it ends, however it ends."""

    generation: GenerationStream
    trace: RequestTrace
    reservation: Reservation
    request_log: RequestLog
    model_file: Path
    metrics: Metrics
    request_state: Any  # the request's state: the access log reads the record from it
    ended: bool = False

    def end(self, status: int, finish: str | None = None, usage: Usage | None = None, error: str | None = None) -> None:
        """Stop the generation, settle the quota, write the record (once)."""
        if self.ended:
            return
        self.ended = True
        self.generation.close()
        if status == 503:
            self.reservation.cancel()  # the engine gave it back unserved (restarting): it costs nothing
        else:
            self.reservation.settle(self.generation.tokens_used)
        record = self.trace.record(self.generation, status=status, finish_reason=finish, usage=usage, error=error)
        self.request_log.submit(record, self.model_file)
        self.metrics.observe_record(record)
        self.request_state.record = record


async def _collect(run: _Run) -> tuple[str, FinishReason, Usage]:
    """All deltas folded into one: the whole text, the finish reason and usage."""
    try:
        async for delta in run.generation:
            run.trace.add(delta.text)
            if delta.finish_reason and delta.usage:
                run.end(200, delta.finish_reason, delta.usage)
                return "".join(run.trace.parts), delta.finish_reason, delta.usage
    except PinaivuError as exc:
        run.end(status_of(exc)[0], error=exc.message)
        raise
    raise RuntimeError("generation ended without a finish reason")


async def _collect_unless_disconnected(request: Request[Any, Any, Any], run: _Run) -> tuple[str, FinishReason, Usage]:
    """Collect, but stop generating as soon as the client goes away."""
    work = asyncio.ensure_future(_collect(run))
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
        run.end(CLIENT_CLOSED, error="the client disconnected")


async def _wait_disconnect(request: Request[Any, Any, Any]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _sse_events(run: _Run) -> AsyncIterator[str]:
    """The SSE stream: role chunk, text chunks, finish chunk, usage chunk if asked, [DONE]."""
    completion = run.trace.completion
    try:
        if completion.kind == "chat":
            yield completion.chunk("", first=True)
        async for delta in run.generation:
            run.trace.add(delta.text)
            if delta.finish_reason is None:
                yield completion.chunk(delta.text)
                continue
            if delta.text:
                yield completion.chunk(delta.text)
            yield completion.chunk(None, delta.finish_reason)
            if completion.include_usage and delta.usage:
                yield completion.usage_chunk(delta.usage)
            run.end(200, delta.finish_reason, delta.usage)
        yield SSE_DONE
    except PinaivuError as exc:  # the status line is gone: report in-band, as OpenAI does
        log.warning("stream %s failed: %s", completion.request_id, exc.message)
        run.end(status_of(exc)[0], error=exc.message)
        yield sse(error_body(exc.message, "server_error", code=exc.code))
    finally:
        run.end(CLIENT_CLOSED, error="the client disconnected")
