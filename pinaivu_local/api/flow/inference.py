"""The one inference flow every API family and replays share: admit, run, end (once, however it ends).

Checks run in the contract's order: (authentication in the guard, the requests limit and validation
by the route,) model, permission, context budget, storage, tokens limit, capacity. A request counts
against its key's requests limit from take_request on, whatever its outcome; its reserved tokens are
settled to those really used when the run ends, or given back when it never ran. Where it runs is
the backend's business (backends.py): this module never asks whether it is local or on a node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pinaivu_local.api.flow.backends import Backend, PlacedGeneration
from pinaivu_local.api.flow.metrics import Metrics
from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.api.flow.request import FinishReason, InferenceRequest, RunIdentity
from pinaivu_local.api.flow.tool_calls import parse_output
from pinaivu_local.api.flow.trace import RequestTrace
from pinaivu_local.engine.generation import Delta, Usage
from pinaivu_local.engine.generation import FinishReason as EngineFinish
from pinaivu_local.engine.logprobs import TokenLogprob
from pinaivu_local.ratelimit.limits import Admission, Limiter
from pinaivu_local.receipts.document import SignedReceipt, canonical, sign
from pinaivu_local.receipts.identity import NodeIdentity
from pinaivu_local.requestlog.log import RequestLog
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.requestlog.writer import PendingWrite

log = logging.getLogger(__name__)

# Status of a request whose client went away before it finished (nginx's convention).
CLIENT_CLOSED = 499


class Run:
    """An admitted generation: iterate for Deltas, then end() it (the first end wins)."""

    def __init__(
        self,
        request: InferenceRequest,
        generation: PlacedGeneration,
        reservation: Admission,
        trace: RequestTrace,
        hooks: _RunHooks,
    ) -> None:
        self.request = request
        self.identity = trace.identity
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
        self.record: FinishedRequest | None = None  # its record, once ended
        # When it ended and when its record was durable (wall clock, ns): a trace's phases end there.
        self.ended_ns: int | None = None
        self.recorded_ns: int | None = None

    @property
    def request_id(self) -> str:
        """The `req_...` id its answer and its record carry."""
        return self.identity.request_id

    @property
    def prompt_tokens(self) -> int:
        """Its prompt's tokens as sized before it started (a gateway's estimate where it cannot tokenize)."""
        return len(self._trace.prepared.prompt)

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
        self.ended_ns = time.time_ns()
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
        self.record = record
        self._write = self._hooks.recorded(record, usage)

    def _receipt_for(self, record: FinishedRequest) -> SignedReceipt | None:
        """A completed inference's receipt, made before anything of it is recorded or sent.

        Ours, signed now, when this process computed it. When a node did, the node's own receipt as it
        signed it: a gateway signs nothing it did not compute (a node without receipts leaves none).
        """
        if not self._generation.computed_here:
            return self._generation.receipt
        return sign(record, self._hooks.identity) if record.model_sha256 is not None else None

    async def recorded(self) -> None:
        """Wait until the record end() submitted is durable: a response is complete only then.

        Call it after end() and before the response's last bytes (delivery.py). Raises
        StorageUnavailable (503) when the record cannot be written in time; it then says 503 too.
        """
        if self._write is not None:
            await self._write.durable()
        self.recorded_ns = time.time_ns()


@dataclass(frozen=True)
class _RunHooks:
    """Where a run's record goes: the request log and the metrics; and who signs its receipt."""

    request_log: RequestLog
    metrics: Metrics
    identity: NodeIdentity

    def recorded(self, record: FinishedRequest, usage: Usage | None = None) -> PendingWrite:
        """Queue the record for writing and count it (with the prefix cache's part of its usage)."""
        pending = self.request_log.submit(record)
        self.metrics.observe_record(record, cached_tokens=usage.cached_tokens if usage else None)
        return pending


class Inference:
    """Admits inference requests and starts them on its backend; the service every API family uses."""

    def __init__(
        self,
        backend: Backend,
        limiter: Limiter,
        request_log: RequestLog,
        metrics: Metrics,
        identity: NodeIdentity,
        *,
        log_content: bool,
        share_prefixes: bool = False,
    ) -> None:
        self._backend = backend
        self._limiter = limiter
        self._request_log = request_log
        self._metrics = metrics
        self._identity = identity
        self._log_content = log_content
        self._share_prefixes = share_prefixes

    async def take_request(self, principal: Principal) -> Admission:
        """Count the caller's request against its requests limit, before its body is even read.

        RateLimited when it is over. From here the request counts whatever its outcome: refused work
        (a prompt that cannot fit, a schema that does not compile) still cost the server its work.
        """
        return await self._limiter.take(principal.key_id, principal.limits)

    def resolve(self, model: str) -> str:
        """The id of the model a request names; ModelNotFound (or, with nodes, Unavailable)."""
        return self._backend.resolve(model)

    async def count(self, principal: Principal, request: InferenceRequest) -> int:
        """The tokens `request`'s prompt comes to, sized as start() sizes it, without running it or reserving
        anything (the caller took its request with take_request). Model and permission are checked first; a
        gateway that does not run the model itself gives its upper bound (fleet/forward.py)."""
        model_id = self._backend.resolve(request.model)
        principal.check_model(model_id)
        scope = "" if self._share_prefixes else principal.key_id
        prepared = await self._backend.prepare(request, model_id, scope)
        return len(prepared.prompt)

    async def start(
        self, principal: Principal, request: InferenceRequest, admission: Admission, *, replay_of: str | None = None
    ) -> Run:
        """Check, reserve and start `request`, counted by `admission` (take_request); raises the first check
        that fails. The Run must be ended.

        Every run is recorded; a verification replay names the request it runs again (`replay_of`).
        """
        model_id = self._backend.resolve(request.model)
        principal.check_model(model_id)
        scope = "" if self._share_prefixes else principal.key_id
        prepared = await self._backend.prepare(request, model_id, scope)
        # Serve nothing that cannot be recorded: 503 storage_unavailable while records cannot be
        # written (disk full, locked) or too many wait to be. Before the rate limit: costs no quota.
        self._request_log.raise_if_unavailable()
        await admission.reserve(prepared.reserved_tokens)
        try:
            generation = await self._backend.start(request, prepared, scope)
        except BaseException:
            admission.cancel()  # never ran: its tokens cost nothing (the request still counts)
            raise
        trace = RequestTrace(
            identity=RunIdentity(request.kind, model_id),
            principal=principal,
            prepared=prepared,
            committed_input=request.committed_input,
            log_content=self._log_content,
            replay_of=replay_of,
            tool_names=request.tool_names,
            structure_digest=request.structure_digest,
        )
        hooks = _RunHooks(self._request_log, self._metrics, self._identity)
        return Run(request, generation, admission, trace, hooks)
