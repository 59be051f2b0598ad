"""The one inference flow chat, completions and replays share: admit, run, end (once, however it ends).

Checks run in the contract's order: (authentication in the guard, the requests limit and validation
by the route,) model, permission, context budget, storage, tokens limit, capacity. A request counts
against its key's requests limit from take_request on, whatever its outcome; its reserved tokens are
settled to those really used when the run ends, or given back when it never ran.
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
from pinaivu_local.api.openai_shapes import Completion, FinishReason, Kind
from pinaivu_local.api.request_trace import RequestTrace
from pinaivu_local.api.tool_calls import parse_output
from pinaivu_local.engine.generation import Delta, Generation, Usage
from pinaivu_local.engine.generation import FinishReason as EngineFinish
from pinaivu_local.engine.logprobs import TokenLogprob
from pinaivu_local.engine.model_pool import ModelEngine, ModelPool
from pinaivu_local.engine.prepared import (
    ChatPrompt,
    Constraint,
    PreparedRequest,
    PromptSource,
)
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.errors import InvalidRequest, Unavailable
from pinaivu_local.fleet.fleet import Fleet
from pinaivu_local.fleet.forward import estimated, remote_request
from pinaivu_local.fleet.nodes import LOCAL
from pinaivu_local.fleet.remote import RemoteGeneration
from pinaivu_local.fleet.router import prefix_key
from pinaivu_local.ratelimit import Admission, Limiter
from pinaivu_local.receipts.document import SignedReceipt, canonical, sign
from pinaivu_local.receipts.identity import NodeIdentity
from pinaivu_local.requestlog.commitment import canonical_json
from pinaivu_local.requestlog.log import RequestLog
from pinaivu_local.requestlog.model_hashes import ModelHashes
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.requestlog.writer import PendingWrite

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
    # Answered as a stream; a whole answer reaches the client only at its end, so a node that fails
    # midway can still be left for another (fleet/remote.py).
    streamed: bool = True
    # A verification replay at a gateway: only a node known to hold this very model file may run it.
    model_sha256: str | None = None
    constraint: Constraint | None = None  # what tools / response_format hold the output to
    tool_names: tuple[str, ...] = ()  # the output is parsed for a call to one of these
    structure_digest: str | None = None  # SHA-256 of tools, tool_choice, ... as sent: kept in the record
    text_interval_s: float | None = None  # how often its new text goes out; None: the server's setting
    body_bytes: int | None = None  # the size of the body it came in (None: unknown, sized as large)


class Run:
    """An admitted generation: iterate for Deltas, then end() it (the first end wins)."""

    def __init__(
        self,
        completion: Completion,
        generation: Generation,
        reservation: Admission,
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
        self._logprobs: list[TokenLogprob] = []
        self._ended = False
        self._write: PendingWrite | None = None
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

    def answer_finish(self, finish: EngineFinish) -> FinishReason:
        """OpenAI's finish reason: `tool_calls` when the answer stopped on a whole call to one of its tools."""
        if finish == "stop" and self.tool_names and parse_output(self.text, self.tool_names).call:
            return "tool_calls"
        return finish

    def end(self, status: int, finish: str | None = None, usage: Usage | None = None, error: str | None = None) -> None:
        """Stop generating, settle or refund the quota, submit the record."""
        if self._ended:
            return
        self._ended = True
        self._generation.close()
        if status == 503:
            self._reservation.cancel()  # the engine gave it back unserved (restarting): its tokens cost nothing
        else:
            self._reservation.settle(self._generation.tokens_used)
        record = self._trace.record(
            self._generation, self.text, status=status, finish_reason=finish, usage=usage, error=error
        )
        if status == 200:
            self.signed = self._receipt_for(record)
        if self.signed is not None:
            record.receipt = canonical(self.signed.document).decode()
            record.receipt_signature = self.signed.signature
        self._write = self._hooks.recorded(record)

    def _receipt_for(self, record: FinishedRequest) -> SignedReceipt | None:
        """A completed inference's receipt, made before anything of it is recorded or sent.

        Ours, signed now, when this process computed it. When a node did, the node's own receipt as it
        signed it: a gateway signs nothing it did not compute (a node without receipts leaves none).
        """
        if isinstance(self._generation, RemoteGeneration):
            return self._generation.receipt
        return sign(record, self._hooks.identity) if record.model_sha256 is not None else None

    async def recorded(self) -> None:
        """Wait until the record end() submitted is durable: a response is complete only then.

        Call it after end() and before the response's last bytes (delivery.py). Raises
        StorageUnavailable (503) when the record cannot be written in time; it then says 503 too.
        """
        if self._write is not None:
            await self._write.durable()


@dataclass(frozen=True)
class _RunHooks:
    """Where a run's record goes: the request log, the metrics and the request's context."""

    request_log: RequestLog
    metrics: Metrics
    context: RequestContext
    identity: NodeIdentity

    def recorded(self, record: FinishedRequest) -> PendingWrite:
        """Queue the record for writing, count it, and let the access log see it."""
        pending = self.request_log.submit(record)
        self.metrics.observe_record(record)
        self.context.record = record
        return pending


class Inference:
    """Admits inference requests and starts them; the service every completion route and replay uses."""

    def __init__(
        self,
        pool: ModelPool,
        limiter: Limiter,
        request_log: RequestLog,
        metrics: Metrics,
        hashes: ModelHashes,
        identity: NodeIdentity,
        *,
        log_content: bool,
        share_prefixes: bool = False,
        fleet: Fleet | None = None,
    ) -> None:
        self._pool = pool
        self._fleet = fleet
        self._hashes = hashes
        self._identity = identity
        self._share_prefixes = share_prefixes
        self._limiter = limiter
        self._request_log = request_log
        self._metrics = metrics
        self._log_content = log_content

    async def take_request(self, context: RequestContext) -> Admission:
        """Count the caller's request against its requests limit, before its body is even read.

        RateLimited when it is over. From here the request counts whatever its outcome: refused work
        (a prompt that cannot fit, a schema that does not compile) still cost the server its work.
        """
        principal = context.caller()
        return await self._limiter.take(principal.key_id, principal.limits)

    async def start(
        self, context: RequestContext, request: InferenceRequest, admission: Admission, *, replay_of: str | None = None
    ) -> Run:
        """Check, reserve and queue `request`, counted by `admission` (take_request); raises the first check
        that fails. The Run must be ended.

        Every run is recorded; a verification replay names the request it runs again (`replay_of`).
        """
        principal = context.caller()
        engine, model_id = self._resolve(request.model)
        context.model_id = model_id
        principal.check_model(model_id)
        scope = "" if self._share_prefixes else principal.key_id
        if engine is not None:
            prepare = functools.partial(
                engine.prepare,
                request.source,
                request.sampling,
                request.max_tokens,
                cache_scope=scope,
                constraint=request.constraint,
            )
            # Rendering and tokenizing take time in proportion to the input: a large one on a worker
            # thread, so the event loop keeps streaming. A small one here: it holds the GIL either way,
            # and the hop to a thread and back costs more than tokenizing a few KB.
            prepared = prepare() if _small(request) else await asyncio.to_thread(prepare)
            # No receipt without the model file's hash: the first requests after a start may wait for it.
            model_sha256: str | None = self._hashes.get(engine.spec.file) or await self._hash_model(engine.spec.file)
        else:
            assert self._fleet is not None
            context_length = self._fleet.context_length(model_id)
            prepared = estimated(model_id, request.source, request.sampling, request.max_tokens, context_length)
            model_sha256 = None  # a node's: its own receipt names it (fleet/remote.py)
        # Serve nothing that cannot be recorded: 503 storage_unavailable while records cannot be
        # written (disk full, locked) or too many wait to be. Before the rate limit: costs no quota.
        self._request_log.raise_if_unavailable()
        await admission.reserve(prepared.reserved_tokens)
        try:
            generation, node = await self._place(request, prepared, engine, scope)
        except BaseException:
            admission.cancel()  # never ran: its tokens cost nothing (the request still counts)
            raise
        completion = Completion(
            request.kind,
            model_id,
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
            node=node,
            tool_names=request.tool_names,
            structure_digest=request.structure_digest,
        )
        hooks = _RunHooks(self._request_log, self._metrics, context, self._identity)
        return Run(completion, generation, admission, trace, hooks)

    def _resolve(self, model: str) -> tuple[ModelEngine | None, str]:
        """The local engine of the model (None where only nodes serve it) and its id; ModelNotFound, or
        with nodes Unavailable (no_nodes_available) when no node that serves it is up."""
        if self._fleet is None:
            engine = self._pool.get(model)
            return engine, engine.id
        self._fleet.check_model(model)
        return (self._pool.get(model) if self._fleet.local_serves(model) else None), model

    async def _place(
        self, request: InferenceRequest, prepared: PreparedRequest, engine: ModelEngine | None, scope: str
    ) -> tuple[Generation, str | None]:
        """Start it: on the local engine, or with nodes on the node the router picks (None: no fleet)."""
        if self._fleet is None:
            assert engine is not None
            return engine.start(prepared, text_interval_s=request.text_interval_s), None
        local_only = _local_only(request)
        if local_only is not None:  # not forwarded to nodes yet: only the gateway's own engine serves it
            if engine is None:
                field, what = local_only
                raise InvalidRequest(
                    f"{what} are served only where the gateway itself runs `{prepared.model_id}`, not by its "
                    f"nodes yet; ask without {field}.",
                    param=field,
                )
            return engine.start(prepared, text_interval_s=request.text_interval_s), LOCAL
        forwarded = remote_request(
            request.kind, prepared.model_id, request.source, request.sampling, request.max_tokens, len(prepared.prompt)
        )
        prefix = prefix_key(prepared.model_id, scope, canonical_json(request.committed_input))
        local = (
            functools.partial(engine.start, prepared, text_interval_s=request.text_interval_s)
            if engine is not None
            else None
        )
        return await self._fleet.start(
            forwarded, prefix, local, buffered=not request.streamed, model_sha256=request.model_sha256
        )

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


# A request whose body is up to this size, without tools or a grammar to compile, is rendered and
# tokenized on the event loop.
INLINE_PREPARE_BYTES = 16 * 1024
INLINE_PREPARE_MESSAGES = 64


def _small(request: InferenceRequest) -> bool:
    """Whether preparing `request` is quick enough to do on the event loop (well under a millisecond).

    Judged by the body's size, which bounds every byte the template can write (message text, call
    arguments, names) at no cost: no walk of the request on the event loop.
    """
    source = request.source
    if request.body_bytes is None or request.body_bytes > INLINE_PREPARE_BYTES:
        return False
    if request.constraint is not None or (isinstance(source, ChatPrompt) and source.tools):
        return False
    return not (isinstance(source, ChatPrompt) and len(source.messages) > INLINE_PREPARE_MESSAGES)


def _local_only(request: InferenceRequest) -> tuple[str, str] | None:
    """(the field, in words) of what a gateway does not forward to its nodes yet, if the request asks for it."""
    if request.sampling.logprobs is not None:
        return "logprobs", "logprobs"
    if request.constraint is not None:
        return "response_format" if not request.tool_names else "tools", "tools and structured outputs"
    return None
