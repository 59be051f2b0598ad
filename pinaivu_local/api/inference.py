"""The one inference flow chat, completions and replays share: admit, run, end (once, however it ends).

Checks run in the contract's order: (authentication in the guard, the requests limit and validation
by the route,) model, permission, context budget, storage, tokens limit, capacity. A reservation is
settled to the tokens really used when the run ends, or refunded when the engine gave the request
back unserved.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinaivu_local.api.context import RequestContext
from pinaivu_local.api.metrics import Metrics
from pinaivu_local.api.openai_shapes import Completion, Kind
from pinaivu_local.api.request_trace import RequestTrace
from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.engine.prepared import Constraint, PromptSource
from pinaivu_local.engine.results import Delta, Usage
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import GenerationStream
from pinaivu_local.errors import Unavailable
from pinaivu_local.ratelimit import RateLimiter, Reservation
from pinaivu_local.requestlog.log import RequestLog
from pinaivu_local.requestlog.records import RequestRecord
from pinaivu_local.requestlog.writer import Receipt

# Status of a request whose client went away before it finished (nginx's convention).
CLIENT_CLOSED = 499


@dataclass(frozen=True)
class InferenceRequest:
    """A completion request as a route hands it over, validated but not yet sized."""

    kind: Kind
    model: str
    source: PromptSource
    sampling: SamplingParams
    max_tokens: int | None  # as asked; None: the rest of the context
    committed_input: Any  # what the commitment hashes: the messages as sent, or the prompt
    include_usage: bool = False  # a stream ends with a usage chunk
    constraint: Constraint | None = None  # what tools / response_format hold the output to
    tool_names: tuple[str, ...] = ()  # the output is parsed for a call to one of these
    structure_digest: str | None = None  # SHA-256 of tools, tool_choice, ... as sent: kept in the record


class Run:
    """An admitted generation: iterate for Deltas, then end() it (the first end wins)."""

    def __init__(
        self,
        completion: Completion,
        generation: GenerationStream,
        reservation: Reservation,
        trace: RequestTrace,
        hooks: _RunHooks,
    ) -> None:
        self.completion = completion
        self._generation = generation
        self._reservation = reservation
        self._trace = trace
        self._hooks = hooks
        self.tool_names = trace.tool_names
        self._parts: list[str] = []
        self._ended = False
        self._receipt: Receipt | None = None

    async def deltas(self) -> AsyncIterator[Delta]:
        """The generation's deltas, their text kept for the record."""
        async for delta in self._generation:
            self._parts.append(delta.text)
            yield delta

    @property
    def text(self) -> str:
        """The output so far."""
        return "".join(self._parts)

    def end(self, status: int, finish: str | None = None, usage: Usage | None = None, error: str | None = None) -> None:
        """Stop generating, settle or refund the quota, submit the record."""
        if self._ended:
            return
        self._ended = True
        self._generation.close()
        if status == 503:
            self._reservation.cancel()  # the engine gave it back unserved (restarting): it costs nothing
        else:
            self._reservation.settle(self._generation.tokens_used)
        record = self._trace.record(
            self._generation, self.text, status=status, finish_reason=finish, usage=usage, error=error
        )
        self._receipt = self._hooks.recorded(record)

    async def recorded(self) -> None:
        """Wait until the record end() submitted is durable: a response is complete only then.

        Call it after end() and before the response's last bytes (delivery.py). Raises
        StorageUnavailable (503) when the record cannot be written in time; it then says 503 too.
        """
        if self._receipt is not None:
            await self._receipt.durable()


@dataclass(frozen=True)
class _RunHooks:
    """Where a run's record goes: the request log, the metrics and the request's context."""

    request_log: RequestLog
    metrics: Metrics
    context: RequestContext
    model_file: Path

    def recorded(self, record: RequestRecord) -> Receipt:
        """Queue the record for writing, count it, and let the access log see it."""
        receipt = self.request_log.submit(record, self.model_file)
        self.metrics.observe_record(record)
        self.context.record = record
        return receipt


class Inference:
    """Admits inference requests and starts them; the service every completion route and replay uses."""

    def __init__(
        self,
        pool: ModelPool,
        limiter: RateLimiter,
        request_log: RequestLog,
        metrics: Metrics,
        *,
        log_content: bool,
        share_prefixes: bool = False,
    ) -> None:
        self._pool = pool
        self._share_prefixes = share_prefixes
        self._limiter = limiter
        self._request_log = request_log
        self._metrics = metrics
        self._log_content = log_content

    def check_requests(self, context: RequestContext) -> None:
        """RateLimited when the caller is over its requests limit: checked before the body is even read."""
        principal = context.caller()
        self._limiter.check_requests(principal.key_id, principal.limits)

    async def start(self, context: RequestContext, request: InferenceRequest, *, replay_of: str | None = None) -> Run:
        """Check, admit and queue `request`; raises the first check that fails. The Run must be ended.

        Every run is recorded; a verification replay names the request it runs again (`replay_of`).
        """
        principal = context.caller()
        engine = self._pool.get(request.model)
        context.model_id = engine.id
        principal.check_model(engine.id)
        # Again (a replay comes here directly): a key over its requests limit must not make us tokenize.
        self._limiter.check_requests(principal.key_id, principal.limits)
        # Rendering and tokenizing take time in proportion to the input: never on the event loop.
        scope = "" if self._share_prefixes else principal.key_id
        prepared = await asyncio.to_thread(
            functools.partial(engine.prepare, cache_scope=scope, constraint=request.constraint),
            request.source,
            request.sampling,
            request.max_tokens,
        )
        # Serve nothing that cannot be recorded: 503 storage_unavailable while records cannot be
        # written (disk full, locked) or too many wait to be. Before the rate limit: costs no quota.
        self._request_log.raise_if_unavailable()
        reservation = self._limiter.admit(principal.key_id, principal.limits, prepared.reserved_tokens)
        try:
            generation = engine.start(prepared)
        except Unavailable:
            reservation.cancel()  # never ran: costs no quota
            raise
        completion = Completion(request.kind, engine.id, include_usage=request.include_usage)
        context.request_id = completion.request_id
        trace = RequestTrace(
            completion=completion,
            principal=principal,
            prepared=prepared,
            committed_input=request.committed_input,
            log_content=self._log_content,
            replay_of=replay_of,
            tool_names=request.tool_names,
            structure_digest=request.structure_digest,
        )
        hooks = _RunHooks(self._request_log, self._metrics, context, engine.spec.file)
        return Run(completion, generation, reservation, trace, hooks)
