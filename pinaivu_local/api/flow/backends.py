"""Where a request runs, behind one seam: this process's engine, or a gateway's nodes.

The inference flow (inference.py) asks a Backend to resolve the model, size the request and start it;
what it gets back is a PlacedGeneration, which says where it ran (its node), on which model file, and
whose receipt it carries. Nothing above this module branches on local against fleet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from pinaivu_local.api.flow.request import InferenceRequest
from pinaivu_local.engine.generation import Delta, Generation, Timings
from pinaivu_local.engine.model_pool import ModelEngine, ModelPool
from pinaivu_local.engine.prepared import ChatPrompt, PreparedRequest
from pinaivu_local.engine.stream import GenerationStream
from pinaivu_local.errors import InvalidRequest, Unavailable
from pinaivu_local.fleet.fleet import Fleet
from pinaivu_local.fleet.forward import estimated, remote_request
from pinaivu_local.fleet.nodes import LOCAL
from pinaivu_local.fleet.router import prefix_key
from pinaivu_local.receipts.document import SignedReceipt
from pinaivu_local.requestlog.commitment import canonical_json
from pinaivu_local.requestlog.model_hashes import ModelHashes

log = logging.getLogger(__name__)


class PlacedGeneration(Generation, Protocol):
    """A started generation and where it runs (read at its end: a node's may fail over to another)."""

    @property
    def node(self) -> str | None:
        """The node that runs it (None: no fleet, this box)."""
        ...

    @property
    def model_sha256(self) -> str | None:
        """The SHA-256 of the model file that computes it (None: a node that does not say)."""
        ...

    @property
    def computed_here(self) -> bool:
        """Whether this process computes it, and so signs its receipt."""
        ...

    @property
    def receipt(self) -> SignedReceipt | None:
        """A node's own signed receipt, as it sent it (None where computed here, or the node has none)."""
        ...

    @property
    def usage_source(self) -> str | None:
        """Who counted its tokens: None this process's engine; "node" a node's sane report; "gateway"."""
        ...


class LocalGeneration:
    """A generation on this process's engine."""

    computed_here = True
    receipt = None
    usage_source = None

    def __init__(self, stream: GenerationStream, *, node: str | None, model_sha256: str) -> None:
        self._stream = stream
        self.node = node
        self.model_sha256 = model_sha256

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._stream.__aiter__()

    def timings(self) -> Timings:
        """Queue time, time to first token and total time so far, in seconds."""
        return self._stream.timings()

    @property
    def tokens_used(self) -> int:
        """Prompt plus tokens generated so far."""
        return self._stream.tokens_used

    def close(self) -> None:
        """Stop generating (idempotent)."""
        self._stream.close()


class Backend(Protocol):
    """Resolves, sizes and starts inference requests."""

    def resolve(self, model: str) -> str:
        """The id of the model `model` names; ModelNotFound, or Unavailable where no node serves it now."""
        ...

    async def prepare(self, request: InferenceRequest, model_id: str, scope: str) -> PreparedRequest:
        """`request` sized for its model: tokenized where this process runs it, else estimated."""
        ...

    async def start(self, request: InferenceRequest, prepared: PreparedRequest, scope: str) -> PlacedGeneration:
        """Start it; Unavailable when it cannot be taken now."""
        ...


class LocalBackend:
    """Every request on this process's own engine."""

    def __init__(self, pool: ModelPool, hashes: ModelHashes, *, node: str | None = None) -> None:
        self._pool = pool
        self._hashes = hashes
        self._node = node

    def resolve(self, model: str) -> str:
        """The id of the model `model` names; ModelNotFound naming the ones there are."""
        return self._pool.get(model).id

    async def prepare(self, request: InferenceRequest, model_id: str, scope: str) -> PreparedRequest:
        """Tokens, budget and constraint, checked against the model (on a worker thread unless small)."""
        engine = self._pool.get(model_id)
        prepare = functools.partial(
            engine.prepare,
            request.source,
            request.sampling,
            request.max_tokens,
            cache_scope=scope,
            constraint=request.constraint,
        )
        # Rendering and tokenizing take time in proportion to the input: a large one on a worker thread,
        # so the event loop keeps streaming. A small one here: it holds the GIL either way, and the hop
        # to a thread and back costs more than tokenizing a few KB.
        return prepare() if small(request) else await asyncio.to_thread(prepare)

    async def start(self, request: InferenceRequest, prepared: PreparedRequest, scope: str) -> LocalGeneration:
        """Queue it on the model's engine."""
        engine = self._pool.get(prepared.model_id)
        model_sha256 = await self.model_hash(engine)
        return self.start_now(engine, request, prepared, model_sha256)

    def start_now(
        self, engine: ModelEngine, request: InferenceRequest, prepared: PreparedRequest, model_sha256: str
    ) -> LocalGeneration:
        """Queue it on `engine` now (its model file's hash already known)."""
        stream = engine.start(prepared, text_interval_s=request.text_interval_s)
        return LocalGeneration(stream, node=self._node, model_sha256=model_sha256)

    async def model_hash(self, engine: ModelEngine) -> str:
        """The model file's SHA-256: no receipt without it, so the first requests after a start may wait."""
        return self._hashes.get(engine.spec.file) or await self._hash_now(engine.spec.file)

    async def _hash_now(self, file: Path) -> str:
        """The model file's SHA-256, hashed now (off the event loop) if the background pass has not yet."""
        try:
            return await asyncio.to_thread(self._hashes.require, file)
        except OSError:
            # The file was loaded, so it should read; the path is for the server log, not the client.
            log.exception("cannot hash the model file %s", file)
            raise Unavailable(
                "The model's file cannot be read to compute its SHA-256; retry later.", retry_after=5
            ) from None


class FleetBackend:
    """A gateway's nodes, its own engine among them where it serves the model."""

    def __init__(self, fleet: Fleet, pool: ModelPool, hashes: ModelHashes) -> None:
        self._fleet = fleet
        self._pool = pool
        self._local = LocalBackend(pool, hashes, node=LOCAL)

    def resolve(self, model: str) -> str:
        """`model` as named, once some node that is up serves it."""
        self._fleet.check_model(model)
        return model

    async def prepare(self, request: InferenceRequest, model_id: str, scope: str) -> PreparedRequest:
        """Tokenized by the gateway's own engine where it has the model; else an upper bound (fleet/forward.py)."""
        if self._fleet.local_serves(model_id):
            return await self._local.prepare(request, model_id, scope)
        context_length = self._fleet.context_length(model_id)
        return estimated(model_id, request.source, request.sampling, request.max_tokens, context_length)

    async def start(self, request: InferenceRequest, prepared: PreparedRequest, scope: str) -> PlacedGeneration:
        """On the node the router picks; what OpenAI's chat cannot carry to a node, only on the gateway's engine."""
        model_id = prepared.model_id
        engine = self._pool.get(model_id) if self._fleet.local_serves(model_id) else None
        if request.sampling.top_k is not None:  # OpenAI's chat, which nodes are sent, has no top_k to send it in
            if engine is None:
                raise InvalidRequest(
                    f"top_k is served only where the gateway itself runs `{model_id}`: its nodes are sent "
                    "OpenAI chat completions, which have no top_k; ask without top_k.",
                    param="top_k",
                )
            return await self._local.start(request, prepared, scope)
        forwarded = remote_request(
            "text" if request.kind == "text" else "chat",  # nodes are sent every chat in OpenAI's shape
            model_id,
            request.source,
            request.sampling,
            request.max_tokens,
            len(prepared.prompt),
            budget=prepared.max_tokens,
            sent_messages=_sent_messages(request),
            node_fields=request.node_fields,
        )
        prefix = prefix_key(model_id, scope, canonical_json(request.committed_input))
        local = None
        if engine is not None:
            local = functools.partial(
                self._local.start_now, engine, request, prepared, await self._local.model_hash(engine)
            )
        return await self._fleet.start(
            forwarded, prefix, local, buffered=not request.streamed, model_sha256=request.model_sha256
        )


# A request whose body is up to this size, without tools or a grammar to compile, is rendered and
# tokenized on the event loop.
INLINE_PREPARE_BYTES = 16 * 1024
INLINE_PREPARE_MESSAGES = 64


def small(request: InferenceRequest) -> bool:
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


def _sent_messages(request: InferenceRequest) -> Any:
    """A chat's messages in OpenAI chat's shape, as a node takes them; None for a text completion."""
    if request.kind == "text":
        return None
    return request.committed_input if request.node_messages is None else request.node_messages
