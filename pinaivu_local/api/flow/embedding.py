"""The embedding and rerank flow: the sibling of inference.py for requests that are not generations.

The same admission (a request counts against its key's requests limit from take_request on; its
input tokens are reserved against the tokens limit once counted, settled when it ends, given back
when it never ran), the same request log (a record per request, kind "embedding" or "rerank") and
the same signed receipts. What differs: no deltas, no budget; the answer is vectors (or scores),
which the record commits to as SHA-256 of their float32 little-endian bytes, in order.

Checks run in the contract's order: model, permission, what the model serves, the request's own
fields against the model (dimensions), sizes (every input within the model's limit, else a 400
naming its index), storage, tokens limit, capacity.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pinaivu_local.api.flow.metrics import Metrics
from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.clock import utcnow
from pinaivu_local.engine.embedding import Embedder, EmbeddingJob, normalized
from pinaivu_local.engine.model_pool import ModelEngine, ModelPool
from pinaivu_local.errors import InvalidRequest, PinaivuError, Unavailable
from pinaivu_local.fleet.fleet import Fleet
from pinaivu_local.fleet.forward_embeddings import (
    ForwardedRequest,
    NodeAnswer,
    embedding_request,
    forward,
    rerank_request,
)
from pinaivu_local.ratelimit.limits import Admission, Limiter
from pinaivu_local.receipts.document import SignedReceipt, canonical, sign
from pinaivu_local.receipts.identity import NodeIdentity
from pinaivu_local.requestlog.commitment import canonical_json, input_digest
from pinaivu_local.requestlog.log import RequestLog
from pinaivu_local.requestlog.model_hashes import ModelHashes
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.requestlog.writer import PendingWrite

EmbeddingKind = Literal["embedding", "rerank"]

# Inputs up to this many bytes in all are tokenized on the event loop; more go to a worker thread.
INLINE_TOKENIZE_BYTES = 16 * 1024


@dataclass(frozen=True)
class EmbeddingRequest:
    """An embedding or rerank request as a route hands it over, validated but not yet sized."""

    kind: EmbeddingKind
    model: str
    texts: list[str] | None = None  # inputs as text (an embedding), or the documents (a rerank)
    tokens: list[list[int]] | None = None  # inputs as token ids (an embedding)
    query: str | None = None  # a rerank's query
    dimensions: int | None = None  # cut each vector to this many (a Matryoshka model), then renormalize
    committed_input: Any = None  # what the record's input commitment hashes: the input as sent
    param: str = "input"  # the body field the inputs came in, for errors naming an index
    sent: bytes = b""  # the body as the client sent it: what a gateway forwards to a node

    @property
    def size(self) -> int:
        """Bytes of text (or ids) to tokenize and check: decides whether that happens off the event loop."""
        text = sum(len(t) for t in self.texts or ()) + len(self.query or "")
        return text + 4 * sum(len(t) for t in self.tokens or ())


@dataclass
class EmbeddingResult:
    """A finished request: its vectors (scores for a rerank), tokens, ids, record and receipt."""

    request_id: str  # the `req_...` id the answer and the record carry
    vectors: list[np.ndarray]
    prompt_tokens: int
    record: FinishedRequest
    signed: SignedReceipt | None
    node_body: dict[str, Any] | None = None  # forwarded: the node's answer, passed on (our request_id in it)


def vectors_digest(vectors: list[np.ndarray]) -> str:
    """SHA-256 of the vectors' float32 little-endian bytes, one after the other in order: exactly what
    the base64 encoding of each carries, so a client can check the commitment from the response."""
    digest = hashlib.sha256()
    for vector in vectors:
        digest.update(np.asarray(vector, dtype="<f4").tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Sized:
    engine: ModelEngine
    embedder: Embedder
    inputs: list[list[int]]
    model_sha256: str
    created_at: Any = field(default_factory=utcnow)


class Embeddings:
    """Admits embedding and rerank requests and runs them on this process's models."""

    def __init__(
        self,
        pool: ModelPool,
        hashes: ModelHashes,
        limiter: Limiter,
        request_log: RequestLog,
        metrics: Metrics,
        identity: NodeIdentity,
        *,
        log_content: bool,
        fleet: Fleet | None = None,
    ) -> None:
        """`fleet`: a gateway's nodes, to which what its own engine does not serve is forwarded."""
        self._pool = pool
        self._hashes = hashes
        self._limiter = limiter
        self._request_log = request_log
        self._metrics = metrics
        self._identity = identity
        self._log_content = log_content
        self._fleet = fleet

    async def take_request(self, principal: Principal) -> Admission:
        """Count the caller's request against its requests limit, before its body is read."""
        return await self._limiter.take(principal.key_id, principal.limits)

    def resolve(self, model: str) -> str:
        """The id of a model this process (or, on a gateway, a node that is up) serves; ModelNotFound,
        or Unavailable when only nodes that are down list it."""
        if self._forwarded(model):
            assert self._fleet is not None
            self._fleet.check_model(model)
            return model
        return self._pool.get(model).id

    def _forwarded(self, model: str) -> bool:
        """A gateway's model its own engine does not run: its nodes serve it."""
        return self._fleet is not None and model not in self._pool.ready_ids()

    async def run(self, principal: Principal, request: EmbeddingRequest, admission: Admission) -> EmbeddingResult:
        """Check, reserve, run and record `request`, counted by `admission`; the first check that fails raises.

        Returns once its record is durable (StorageUnavailable otherwise): the answer may go out.
        """
        model_id = self.resolve(request.model)
        principal.check_model(model_id)
        if self._forwarded(model_id):
            return await self._on_node(principal, request, admission)
        engine = self._pool.get(model_id)
        self._check_serves(engine, request)
        sized = await self._size(engine, request)
        self._request_log.raise_if_unavailable()  # serve nothing that cannot be recorded; costs no quota
        n_tokens = sum(len(t) for t in sized.inputs)
        await admission.reserve(n_tokens)
        request_id = f"req_{uuid.uuid4().hex}"
        try:
            vectors, job = await sized.embedder.run(sized.inputs)
        except BaseException as exc:
            if isinstance(exc, Unavailable) or not isinstance(exc, PinaivuError):
                admission.cancel()  # never ran: its tokens cost nothing (the request still counts)
            else:
                admission.settle(n_tokens)
            if isinstance(exc, PinaivuError) and not isinstance(exc, Unavailable):
                self._recorded(self._record(principal, request, sized, request_id, n_tokens, None, job=None, error=exc))
            raise
        admission.settle(n_tokens)
        if request.dimensions is not None:
            vectors = [normalized(v[: request.dimensions]) for v in vectors]
        record = self._record(principal, request, sized, request_id, n_tokens, vectors, job=job)
        signed = sign(record, self._identity)
        record.receipt = canonical(signed.document).decode()
        record.receipt_signature = signed.signature
        await self._recorded(record).durable()
        return EmbeddingResult(request_id, vectors, n_tokens, record, signed)

    async def _on_node(self, principal: Principal, request: EmbeddingRequest, admission: Admission) -> EmbeddingResult:
        """Forwarded to a node (fleet/forward_embeddings.py): the tokens limit reserves an upper bound on the
        prompt, settled to the node's count; the record is written here, naming the node, with its receipt."""
        assert self._fleet is not None
        forwarded = _forwarded_request(request)
        self._request_log.raise_if_unavailable()
        await admission.reserve(forwarded.prompt_bound)
        created_at = utcnow()
        try:
            answer = await forward(self._fleet, forwarded)
        except BaseException:
            admission.cancel()  # no node computed it (or one refused it): its tokens cost nothing
            raise
        admission.settle(answer.prompt_tokens)
        request_id = f"req_{uuid.uuid4().hex}"
        record = self._node_record(principal, request, request_id, created_at, answer)
        await self._recorded(record).durable()
        body = {**answer.body, "request_id": request_id}
        return EmbeddingResult(request_id, answer.vectors, answer.prompt_tokens, record, answer.receipt, body)

    def _node_record(
        self, principal: Principal, request: EmbeddingRequest, request_id: str, created_at: Any, answer: NodeAnswer
    ) -> FinishedRequest:
        """The gateway's record of a node's answer: the node's receipt as it signed it (the gateway signs
        nothing it did not compute), and the commitment to the output the receipt names, else to what came."""
        receipt = answer.receipt
        output_sha256 = str(receipt.document["output_sha256"]) if receipt else vectors_digest(answer.vectors)
        total_ms = round((utcnow() - created_at).total_seconds() * 1000, 3)
        return FinishedRequest(
            request_id=request_id,
            created_at=created_at,
            kind=request.kind,
            key_id=principal.key_id,
            key_name=principal.name,
            model_id=request.model,
            model_sha256=str(receipt.document["model_sha256"]) if receipt else None,
            status_code=200,
            finish_reason="stop",
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=0,
            total_ms=total_ms,
            sampling=json.dumps({"dimensions": request.dimensions, "pooling": None}, sort_keys=True),
            input_sha256=input_digest(request.committed_input),
            output_sha256=output_sha256,
            input_content=canonical_json(request.committed_input) if self._log_content else None,
            node=answer.node,
            usage_source=answer.usage_source,
            receipt=canonical(receipt.document).decode() if receipt else None,
            receipt_signature=receipt.signature if receipt else None,
        )

    def _recorded(self, record: FinishedRequest) -> PendingWrite:
        """Queue the record for writing and count it."""
        pending = self._request_log.submit(record)
        self._metrics.observe_record(record)
        return pending

    @staticmethod
    def _check_serves(engine: ModelEngine, request: EmbeddingRequest) -> None:
        """A rerank needs a rerank model; an embedding, a chat or embedding model; `dimensions`, Matryoshka."""
        kind = engine.spec.kind
        if request.kind == "rerank" and kind != "rerank":
            raise InvalidRequest(
                f"`{engine.id}` is not a rerank model (it serves {', '.join(engine.spec.capabilities())}); "
                "use a model whose capabilities in GET /v1/models include rerank.",
                param="model",
            )
        if request.kind == "embedding" and kind == "rerank":
            raise InvalidRequest(
                f"`{engine.id}` is a rerank model: it scores documents against a query (POST /v1/rerank) "
                "and makes no embeddings; use a model whose capabilities include embeddings.",
                param="model",
            )
        if request.dimensions is not None and not engine.spec.matryoshka:
            raise InvalidRequest(
                f"dimensions is not supported by `{engine.id}`: its vectors cannot be cut short (only a model "
                "trained for it, marked matryoshka in the catalog, can). Leave dimensions out.",
                param="dimensions",
            )

    async def _size(self, engine: ModelEngine, request: EmbeddingRequest) -> _Sized:
        """Tokens of every input, checked against the model (off the event loop unless small)."""

        def size() -> tuple[Embedder, list[list[int]]]:
            embedder = engine.embedder()  # a chat model's is created on first use: not on the event loop
            if request.kind == "rerank":
                return embedder, embedder.pair_tokens(request.query or "", request.texts or [])
            if request.tokens is not None:
                embedder.check(request.tokens, request.param)
                return embedder, request.tokens
            return embedder, embedder.tokenize(request.texts or [], request.param)

        # A chat model's embedder is made on its first use, which takes a while: always on a worker thread.
        if request.size <= INLINE_TOKENIZE_BYTES and engine.spec.kind != "chat":
            embedder, inputs = size()
        else:
            embedder, inputs = await asyncio.to_thread(size)
        if request.dimensions is not None and request.dimensions > embedder.n_out:
            raise InvalidRequest(
                f"dimensions is {request.dimensions}, but `{engine.id}` makes vectors of {embedder.n_out}; "
                f"ask for at most {embedder.n_out}.",
                param="dimensions",
            )
        model_sha256 = self._hashes.get(engine.spec.file) or await self._hash_now(engine)
        return _Sized(engine, embedder, inputs, model_sha256)

    async def _hash_now(self, engine: ModelEngine) -> str:
        try:
            return await asyncio.to_thread(self._hashes.require, engine.spec.file)
        except OSError:
            raise Unavailable(
                "The model's file cannot be read to compute its SHA-256; retry later.", retry_after=5
            ) from None

    def _record(
        self,
        principal: Principal,
        request: EmbeddingRequest,
        sized: _Sized,
        request_id: str,
        n_tokens: int,
        vectors: list[np.ndarray] | None,
        *,
        job: EmbeddingJob | None,
        error: PinaivuError | None = None,
    ) -> FinishedRequest:
        queue_ms = total_ms = None
        if job is not None and job.started_at is not None and job.finished_at is not None:
            queue_ms = round((job.started_at - job.submitted_at) * 1000, 3)
            total_ms = round((job.finished_at - job.submitted_at) * 1000, 3)
        settings = {"dimensions": request.dimensions, "pooling": sized.embedder.pooling}
        return FinishedRequest(
            request_id=request_id,
            created_at=sized.created_at,
            kind=request.kind,
            key_id=principal.key_id,
            key_name=principal.name,
            model_id=sized.engine.id,
            model_sha256=sized.model_sha256,
            status_code=200 if vectors is not None else 500,
            finish_reason="stop" if vectors is not None else None,
            error=error.message if error else None,
            prompt_tokens=n_tokens,
            completion_tokens=0,
            queue_ms=queue_ms,
            total_ms=total_ms,
            sampling=json.dumps(settings, sort_keys=True),
            input_sha256=input_digest(request.committed_input),
            output_sha256=vectors_digest(vectors) if vectors is not None else None,
            input_content=canonical_json(request.committed_input) if self._log_content else None,
        )


def _forwarded_request(request: EmbeddingRequest) -> ForwardedRequest:
    """What a node is sent: the client's body, with the bounds its answer must keep."""
    if request.kind == "rerank":
        return rerank_request(request.model, request.sent, request.query or "", request.texts or [])
    return embedding_request(request.model, request.sent, request.texts, request.tokens, request.dimensions)
