"""An embeddings or rerank request forwarded to a node: one POST of the body as the client sent it, the
node's whole answer read within a bound, checked, and failed over to another node as chat is.

What a node sends is never trusted: its answer is read up to a size in proportion to the request (at
most MAX_BASE_BYTES plus a bound per input), as sent (never inflated), parsed off the event loop when
large, and must hold exactly one vector per input (or one score per document at most), numbers only,
all of one length. A node that breaks a bound, times out or answers 5xx is out of rotation and the
next is tried; a node's 4xx refusing the request itself is the client's answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np

from pinaivu_local.errors import InvalidRequest
from pinaivu_local.fleet.fleet import _THE_REQUESTS_OWN, Fleet, _bounded_body, _client_error
from pinaivu_local.fleet.node_stream import INLINE_PARSE_BYTES, MAX_RECEIPT_BYTES, NodeDropped
from pinaivu_local.fleet.state import NodeState
from pinaivu_local.receipts.document import MalformedReceipt, SignedReceipt
from pinaivu_local.wire import RECEIPT_HEADER

log = logging.getLogger(__name__)

ForwardKind = Literal["embedding", "rerank"]

# What an answer may carry beyond its vectors (the envelope, the usage, the model's name).
MAX_BASE_BYTES = 1024 * 1024
# One vector as JSON floats: 8192 dimensions of ~21 characters each fit, with room.
MAX_VECTOR_BYTES = 256 * 1024
# One rerank result beyond its document's text (echoed, JSON-escaped at most 6 bytes a byte).
MAX_RESULT_BYTES = 1024
# Tokens an input may gain beyond one per byte of its text (BOS, EOS, CLS, SEP).
TOKENS_PER_INPUT = 4


@dataclass(frozen=True)
class ForwardedRequest:
    """An embeddings or rerank request for a node: the body as the client sent it, and what bounds its answer."""

    kind: ForwardKind
    model: str
    body: bytes  # the client's JSON, sent on unchanged
    inputs: int  # embeddings: vectors the answer must hold; rerank: documents (at most that many results)
    prompt_bound: int  # the most prompt tokens the node may report (one per byte and a few per input)
    answer_bound: int  # the most bytes its answer may be
    dimensions: int | None = None  # embeddings: the length every vector must have, when asked


@dataclass(frozen=True)
class NodeAnswer:
    """A node's checked answer: its body, the vectors (scores) it holds, its usage and receipt."""

    node: str
    body: dict[str, Any]
    vectors: list[np.ndarray]  # embeddings in index order; rerank: each result's score, in document order
    prompt_tokens: int  # the node's count where sane, else the request's prompt bound
    usage_source: Literal["node", "gateway"]
    receipt: SignedReceipt | None


def embedding_request(
    model: str, body: bytes, texts: list[str] | None, tokens: list[list[int]] | None, dimensions: int | None
) -> ForwardedRequest:
    """An embeddings request's bounds, from its inputs (text: a token per byte at most)."""
    n = len(texts) if texts is not None else len(tokens or ())
    prompt = sum(len(t.encode()) + TOKENS_PER_INPUT for t in texts) if texts is not None else 0
    prompt += sum(len(t) for t in tokens or ())
    return ForwardedRequest(
        "embedding", model, body, n, prompt, MAX_BASE_BYTES + n * MAX_VECTOR_BYTES, dimensions=dimensions
    )


def rerank_request(model: str, body: bytes, query: str, documents: list[str]) -> ForwardedRequest:
    """A rerank request's bounds: each document scored with the query, and echoed back at most once."""
    query_bytes = len(query.encode())
    prompt = sum(query_bytes + len(d.encode()) + TOKENS_PER_INPUT for d in documents)
    answer = MAX_BASE_BYTES + sum(6 * len(d.encode()) + MAX_RESULT_BYTES for d in documents)
    return ForwardedRequest("rerank", model, body, len(documents), prompt, answer)


async def forward(fleet: Fleet, request: ForwardedRequest) -> NodeAnswer:
    """The answer of the first node that gives a good one; Unavailable when none does."""
    nodes = fleet.remote_nodes(request.model)
    if request.kind == "rerank":
        nodes = [n for n in nodes if _reranks(n, request.model)]
        if not nodes and fleet.remote_nodes(request.model):
            raise InvalidRequest(
                f"`{request.model}` is served only by nodes that do not serve /v1/rerank (OpenAI-compatible "
                "servers whose model list does not say rerank); rerank is forwarded to pinaivu nodes and to "
                "nodes that list it. Send it to such a node, or use a model that one serves.",
                param="model",
            )
    for node in nodes:
        answer = await _on(fleet, node, request)
        if answer is not None:
            return answer
    raise fleet.no_nodes(request.model)


def _reranks(node: NodeState, model: str) -> bool:
    """A pinaivu node serves /v1/rerank; another, where its model object lists rerank among its capabilities."""
    if node.spec.kind == "pinaivu":
        return True
    capabilities = node.models[model].info.get("capabilities")
    return isinstance(capabilities, list) and "rerank" in capabilities


async def _on(fleet: Fleet, node: NodeState, request: ForwardedRequest) -> NodeAnswer | None:
    """The node's checked answer; None (the node counted against unless only busy) to try the next."""
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    if node.spec.api_key:
        headers["authorization"] = f"Bearer {node.spec.api_key}"
    path = "/embeddings" if request.kind == "embedding" else "/rerank"
    client, limits = fleet.client, fleet.limits
    sent = client.build_request("POST", f"{node.spec.v1}{path}", content=request.body, headers=headers)
    node.in_flight += 1
    opened_at = node.reports
    try:
        try:
            # A node computes before it answers: its headers within the node timeout, all within the deadline.
            async with asyncio.timeout(min(limits.idle_s, limits.deadline_s)):
                response = await client.send(sent, stream=True)
        except (httpx.TimeoutException, TimeoutError):
            node.down("timed out", "timeout")
            return None
        except httpx.TransportError as exc:
            node.down(f"connection failed ({exc.__class__.__name__})", "connection")
            return None
        if response.status_code != 200:
            status = response.status_code
            body = await _bounded_body(response)
            if status in _THE_REQUESTS_OWN:
                raise _client_error(status, node.spec.redacted(body), node.name)
            if status >= 500 and status != 503:
                node.down(f"HTTP {status} to {path}", "http_status")
            log.warning("node %s refused a request: HTTP %s %s", node.name, status, node.spec.redacted(body[:200]))
            return None
        try:
            raw = await _read(response, request.answer_bound, limits.idle_s, limits.deadline_s)
            receipt = _receipt(node, response.headers.get(RECEIPT_HEADER))
            text = raw.decode(errors="replace")
            if len(text) > INLINE_PARSE_BYTES:
                checked = await asyncio.to_thread(_checked, text, request)
            else:
                checked = _checked(text, request)
        except NodeDropped as exc:
            log.warning("node %s gave a bad answer: %s", node.name, exc.reason)
            node.down(exc.reason, exc.error_class)
            return None
        answer, vectors, usage = checked
        if isinstance(usage, str):  # answered well, counted wrongly: the answer stands, the node is out
            log.warning("node %s reported impossible usage: %s", node.name, usage)
            node.down(f"reported impossible usage: {usage}", "usage")
            prompt_tokens, source = request.prompt_bound, "gateway"
        elif usage is None:  # a server that reports none: the reservation's bound is what it cost
            prompt_tokens, source = request.prompt_bound, "gateway"
        else:
            prompt_tokens, source = usage, "node"
        if receipt is not None:
            node.hashes[request.model] = str(receipt.document["model_sha256"])
        return NodeAnswer(node.name, answer, vectors, prompt_tokens, source, receipt)  # type: ignore[arg-type]
    finally:
        node.finished(request.model, opened_at)


async def _read(response: httpx.Response, bound: int, idle_s: float, deadline_s: float) -> bytes:
    """The whole body as sent, at most `bound` bytes, each piece within `idle_s` and all within `deadline_s`."""
    body = bytearray()
    raw = response.aiter_raw()
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                try:
                    async with asyncio.timeout(idle_s):
                        piece = await anext(raw)
                except StopAsyncIteration:
                    return bytes(body)
                body += piece
                if len(body) > bound:
                    raise NodeDropped(f"an answer over {bound} bytes", "bound")
    except TimeoutError:
        raise NodeDropped("timed out reading its answer", "timeout") from None
    except httpx.TransportError as exc:
        raise NodeDropped(f"connection lost ({exc.__class__.__name__})", "connection") from None
    finally:
        await response.aclose()


def _receipt(node: NodeState, header: str | None) -> SignedReceipt | None:
    """The node's signed receipt from its header (None: none, or one malformed, which is logged)."""
    if header is None:
        return None
    if len(header) > MAX_RECEIPT_BYTES:
        raise NodeDropped(f"a receipt over {MAX_RECEIPT_BYTES} bytes", "bound")
    try:
        return SignedReceipt.from_envelope(json.loads(header))
    except (ValueError, MalformedReceipt) as exc:
        log.warning("node %s sent a malformed receipt (%s): kept none", node.name, exc)
        return None


def _checked(text: str, request: ForwardedRequest) -> tuple[dict[str, Any], list[np.ndarray], int | str | None]:
    """The answer parsed and checked: (body, vectors, sane prompt tokens or why the usage is not believed)."""
    try:
        body = json.loads(text)
    except ValueError:
        raise NodeDropped("its answer is not JSON") from None
    if not isinstance(body, dict):
        raise NodeDropped("its answer is not a JSON object")
    vectors = _embeddings(body, request) if request.kind == "embedding" else _scores(body, request)
    return body, vectors, _usage(body.get("usage"), request.prompt_bound)


def _embeddings(body: dict[str, Any], request: ForwardedRequest) -> list[np.ndarray]:
    data = body.get("data")
    if not isinstance(data, list) or len(data) != request.inputs:
        got = len(data) if isinstance(data, list) else type(data).__name__
        raise NodeDropped(f"its answer holds {got} embeddings for {request.inputs} inputs")
    by_index: dict[int, np.ndarray] = {}
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < request.inputs or index in by_index:
            raise NodeDropped("its embeddings' indexes are not each input's once")
        by_index[index] = _vector(item.get("embedding"))
    vectors = [by_index[i] for i in range(request.inputs)]
    lengths = {len(v) for v in vectors}
    if len(lengths) != 1 or 0 in lengths:
        raise NodeDropped("its embeddings are not all of one length")
    if request.dimensions is not None and lengths != {request.dimensions}:
        raise NodeDropped(f"its embeddings are not of the {request.dimensions} dimensions asked")
    return vectors


def _vector(value: object) -> np.ndarray:
    """An embedding as floats or base64 float32 little-endian bytes; finite numbers only."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise NodeDropped("an embedding is not base64") from None
        if len(raw) % 4:
            raise NodeDropped("a base64 embedding is not whole float32 numbers")
        vector = np.frombuffer(raw, dtype="<f4")
    elif isinstance(value, list) and all(type(x) in (int, float) for x in value):
        vector = np.asarray(value, dtype="<f4")
    else:
        raise NodeDropped("an embedding is not a list of numbers or base64")
    if not np.isfinite(vector).all():
        raise NodeDropped("an embedding holds a number that is not finite")
    return vector


def _scores(body: dict[str, Any], request: ForwardedRequest) -> list[np.ndarray]:
    """Each result's relevance score, in document order."""
    results = body.get("results")
    if not isinstance(results, list) or not 0 < len(results) <= request.inputs:
        raise NodeDropped(f"its answer does not hold 1 to {request.inputs} results")
    scores: dict[int, float] = {}
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < request.inputs or index in scores:
            raise NodeDropped("its results' indexes are not documents' each once")
        if type(score) not in (int, float) or not math.isfinite(score):  # type: ignore[arg-type]
            raise NodeDropped("a relevance_score is not a finite number")
        scores[index] = float(score)  # type: ignore[arg-type]
    return [np.asarray([scores[i]], dtype="<f4") for i in sorted(scores)]


def _usage(raw: object, bound: int) -> int | str | None:
    """The node's prompt_tokens if a whole number within the prompt's bound, else why not (None: no usage)."""
    if raw is None:
        return None
    tokens = raw.get("prompt_tokens") if isinstance(raw, dict) else None
    if type(tokens) is not int:
        return f"prompt_tokens is {repr(tokens)[:40]}, not a whole number"
    if not 0 <= tokens <= bound:
        return f"prompt_tokens {repr(tokens)[:40]} is outside 0 to the prompt's bound ({bound})"
    return tokens
