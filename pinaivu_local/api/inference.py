"""The one inference flow chat, completions and replays share: admit, run, end (once, however it ends).

Checks run in the contract's order: (authentication in the guard, the requests limit and validation
by the route,) model, permission, context budget, storage, tokens limit, capacity. A reservation is
settled to the tokens really used when the run ends, or refunded when the engine gave the request
back unserved.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinaivu_local.api.context import RequestContext
from pinaivu_local.api.metrics import Metrics
from pinaivu_local.api.openai_shapes import Completion, Kind
from pinaivu_local.api.request_trace import RequestTrace
from pinaivu_local.engine.logprobs import TokenLogprob
from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.engine.prepared import PromptSource
from pinaivu_local.engine.results import Delta, Usage
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import GenerationStream
from pinaivu_local.errors import Unavailable
from pinaivu_local.ratelimit import RateLimiter, Reservation
from pinaivu_local.receipts.document import SignedReceipt, canonical, sign
from pinaivu_local.receipts.identity import NodeIdentity
from pinaivu_local.requestlog.log import RequestLog
from pinaivu_local.requestlog.model_hashes import ModelHashes
from pinaivu_local.requestlog.records import RequestRecord
from pinaivu_local.requestlog.writer import Receipt

log = logging.getLogger(__name__)

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
        self._parts: list[str] = []
        self._logprobs: list[TokenLogprob] = []
        self._ended = False
        self._receipt: Receipt | None = None
        self.signed: SignedReceipt | None = None  # a completed run's signed receipt, once ended

    async def deltas(self) -> AsyncIterator[Delta]:
        """The generation's deltas, their text kept for the record."""
        async for delta in self._generation:
            self._parts.append(delta.text)
            self._logprobs.extend(delta.logprobs or ())
            yield delta

    @property
    def text(self) -> str:
        """The output so far."""
        return "".join(self._parts)

    @property
    def logprobs(self) -> list[TokenLogprob]:
        """The logprobs of the output so far (empty unless the request asked for them)."""
        return self._logprobs

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
        if status == 200:  # a completed inference: signed before anything of it is recorded or sent
            self.signed = sign(record, self._hooks.identity)
            record.receipt = canonical(self.signed.document).decode()
            record.receipt_signature = self.signed.signature
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
    identity: NodeIdentity

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
        hashes: ModelHashes,
        identity: NodeIdentity,
        *,
        log_content: bool,
        share_prefixes: bool = False,
    ) -> None:
        self._pool = pool
        self._hashes = hashes
        self._identity = identity
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
            functools.partial(engine.prepare, cache_scope=scope), request.source, request.sampling, request.max_tokens
        )
        # No receipt without the model file's hash: the first requests after a start may wait for it.
        model_sha256 = self._hashes.get(engine.spec.file) or await self._hash_model(engine.spec.file)
        # Serve nothing that cannot be recorded: 503 storage_unavailable while records cannot be
        # written (disk full, locked) or too many wait to be. Before the rate limit: costs no quota.
        self._request_log.raise_if_unavailable()
        reservation = self._limiter.admit(principal.key_id, principal.limits, prepared.reserved_tokens)
        try:
            generation = engine.start(prepared)
        except Unavailable:
            reservation.cancel()  # never ran: costs no quota
            raise
        completion = Completion(
            request.kind,
            engine.id,
            include_usage=request.include_usage,
            logprobs=request.sampling.logprobs is not None,
        )
        context.request_id = completion.request_id
        trace = RequestTrace(
            completion=completion,
            principal=principal,
            prepared=prepared,
            committed_input=request.committed_input,
            log_content=self._log_content,
            model_sha256=model_sha256,
            replay_of=replay_of,
        )
        hooks = _RunHooks(self._request_log, self._metrics, context, engine.spec.file, self._identity)
        return Run(completion, generation, reservation, trace, hooks)

    async def _hash_model(self, file: Path) -> str:
        """The model file's SHA-256, hashed now (off the event loop) if the background pass has not yet."""
        try:
            return await asyncio.to_thread(self._hashes.require, file)
        except OSError:
            # The file was loaded, so it should read; the path is for the server log, not the client.
            log.exception("cannot hash the model file %s", file)
            raise Unavailable(
                "The model's file cannot be read to compute its SHA-256; retry later.", retry_after=5
            ) from None
