"""A generation running on a remote node: its SSE stream read back as the engine's Deltas.

The gateway always asks a node for a stream (with usage), whatever the client asked, so text reaches
the client as the node makes it, and a node that fails before its first token can be left for another
without the client seeing anything but a normal answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from pinaivu_local.engine.generation import Delta, FinishReason, Timings, Usage
from pinaivu_local.errors import EngineFailure
from pinaivu_local.fleet.state import NodeState
from pinaivu_local.receipts.document import MalformedReceipt, SignedReceipt
from pinaivu_local.wire import RECEIPT_FIELD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteRequest:
    """What the gateway sends a node: the path under /v1 and the body (always a stream with usage)."""

    model: str
    path: str  # "/chat/completions" or "/completions"
    body: dict[str, Any]
    prompt_tokens: int  # counted by the gateway (or estimated): used when a node reports no usage


class NodeDropped(Exception):
    """The node's stream broke: connection lost, timed out, or an error event instead of text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Opens the request on another node, leaving out those tried: (node, response), or raises Unavailable.
Reopen = Callable[[set[str]], Awaitable[tuple[NodeState, httpx.Response]]]


class RemoteGeneration:
    """The async side of one request on a node: iterate for Deltas; close() cancels it. Moves to another
    node, invisibly, when its node fails before the first text (`buffered`, for a client that gets the
    answer whole: before the end); after that, the failure is an error."""

    def __init__(
        self, request: RemoteRequest, node: NodeState, response: httpx.Response, reopen: Reopen, *, buffered: bool
    ) -> None:
        self._request = request
        self._buffered = buffered
        self._reopen = reopen
        self._node = node
        self._response = response
        self._tried = {node.name}
        self._submitted = time.monotonic()
        self._connected: float | None = time.monotonic()
        self._first_token: float | None = None
        self._finished: float | None = None
        self._generated = 0
        self._prompt_tokens = request.prompt_tokens
        self._closed = False
        self._holding = True  # counted in the node's in_flight (the fleet counted it when it opened)
        self._opened_at = node.reports  # the node's load reports so far: later ones count it as running
        self._seen: dict[str, Any] = {}  # what the node's last chunk said beyond OpenAI's shape

    @property
    def node(self) -> str:
        """The node running it now."""
        return self._node.name

    @property
    def model_sha256(self) -> str | None:
        """The model file's SHA-256 as the node's signed receipt names it (None: a node without receipts)."""
        receipt = self.receipt
        return None if receipt is None else str(receipt.document["model_sha256"])

    # A node computed it: the gateway signs nothing for it, and passes the node's receipt on.
    computed_here = False

    @property
    def receipt(self) -> SignedReceipt | None:
        """The node's own signed receipt, exactly as it sent it (None: a node without receipts, or a
        malformed one). The gateway keeps it; it signs nothing for a node."""
        envelope = self._seen.get("receipt")
        if envelope is None:
            return None
        try:
            return SignedReceipt.from_envelope(envelope)
        except MalformedReceipt as exc:
            log.warning("node %s sent a malformed receipt (%s): kept none", self.node, exc)
            return None

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Delta]:
        try:
            while True:
                try:
                    if self._buffered:  # held until the node is done: it may still fail over until then
                        held = [delta async for delta in self._read()]
                        text = "".join(delta.text for delta in held)
                        if text:
                            yield Delta(text)
                        yield held[-1]
                    else:
                        async for delta in self._read():
                            yield delta
                    if self.model_sha256:
                        self._node.hashes[self._request.model] = self.model_sha256
                    return
                except NodeDropped as exc:
                    log.warning("node %s dropped a request: %s", self._node.name, exc.reason)
                    self._node.down(exc.reason)
                    if self._first_token is not None and not self._buffered:
                        raise EngineFailure(
                            f"The node {self._node.name} failed while streaming ({exc.reason}); the output is "
                            "incomplete. Retry the request."
                        ) from None
                    self._first_token, self._generated = None, 0
                    await self._move()
        finally:
            self._finished = self._finished or time.monotonic()
            await self._release()

    async def _read(self) -> AsyncIterator[Delta]:
        """The current node's deltas, counted."""
        self._seen.clear()
        async for delta in _deltas(self._response, self._request, self._seen):
            if self._first_token is None:
                self._first_token = time.monotonic()
            if delta.finish_reason is None:
                self._generated += 1
            else:
                self._prompt_tokens = delta.usage.prompt_tokens if delta.usage else self._prompt_tokens
            yield delta

    async def _move(self) -> None:
        """The same request on another node (Unavailable when none is left)."""
        await self._release()
        self._connected = None
        self._node, self._response = await self._reopen(self._tried)
        self._holding = True
        self._opened_at = self._node.reports
        self._tried.add(self._node.name)
        self._connected = time.monotonic()

    async def _release(self) -> None:
        """Give the node's slot back (once) and close its stream."""
        if self._holding:
            self._holding = False
            self._node.finished(self._request.model, self._opened_at)
        await self._response.aclose()

    def timings(self) -> Timings:
        """Time to the node's answer, to the first token, and in all, in seconds."""
        end = self._finished or time.monotonic()
        return Timings(
            queue_s=(self._connected or end) - self._submitted,
            first_token_s=None if self._first_token is None else self._first_token - self._submitted,
            total_s=end - self._submitted,
        )

    @property
    def tokens_used(self) -> int:
        """Prompt plus tokens generated so far."""
        return self._prompt_tokens + self._generated

    def close(self) -> None:
        """Stop: the node's stream is closed, which cancels the request there."""
        if self._closed:
            return
        self._closed = True
        self._finished = self._finished or time.monotonic()
        if self._holding:
            with contextlib.suppress(RuntimeError):  # no running loop: the client closes it at shutdown
                asyncio.get_running_loop().create_task(self._release())


async def _deltas(response: httpx.Response, request: RemoteRequest, seen: dict[str, Any]) -> AsyncIterator[Delta]:
    """A node's SSE stream as Deltas; the last one carries the finish reason and the usage. A pinaivu
    node's receipt (on its last chunk) goes into `seen`, as the node signed it."""
    finish: FinishReason | None = None
    usage: Usage | None = None
    chunks = 0
    try:
        async for event in EventSource(response).aiter_sse():
            if not event.data:  # a comment or a keep-alive: nothing to read
                continue
            if event.data == "[DONE]":
                break
            chunk = json.loads(event.data)
            if "error" in chunk:
                raise NodeDropped(f"error event: {str(chunk['error'].get('message', chunk['error']))[:200]}")
            receipt = chunk.get(RECEIPT_FIELD)
            if receipt:
                seen["receipt"] = receipt
            if chunk.get("usage"):
                usage = Usage(chunk["usage"]["prompt_tokens"], chunk["usage"]["completion_tokens"])
            for choice in chunk.get("choices") or []:
                text = _text(choice)
                if text:
                    chunks += 1
                    yield Delta(text)
                if choice.get("finish_reason"):
                    finish = "length" if choice["finish_reason"] == "length" else "stop"
    except httpx.TimeoutException:
        raise NodeDropped("timed out") from None
    except httpx.TransportError as exc:
        raise NodeDropped(f"connection lost ({exc.__class__.__name__})") from None
    except (SSEError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NodeDropped(f"not an OpenAI stream ({exc.__class__.__name__})") from None
    if finish is None:
        raise NodeDropped("the stream ended without a finish reason")
    # An OpenAI-compatible server that sends no usage (llama_cpp.server): the prompt as counted here,
    # one token per chunk (each carries one token's text on the servers we know).
    yield Delta("", finish, usage or Usage(request.prompt_tokens, chunks))


def _text(choice: dict[str, Any]) -> str:
    if "delta" in choice:
        return str(choice["delta"].get("content") or "")
    return str(choice.get("text") or "")
