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
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from pinaivu_local.engine.generation import Delta, FinishReason, Timings, Usage
from pinaivu_local.errors import EngineFailure
from pinaivu_local.fleet.node_choice import ChoiceReader
from pinaivu_local.fleet.node_stream import (
    MAX_RECEIPT_BYTES,
    MAX_TOKEN_TEXT_BYTES,
    NodeDropped,
    StreamLimits,
    data_events,
    parsed,
)
from pinaivu_local.fleet.node_usage import UsageBounds
from pinaivu_local.fleet.state import ErrorClass, NodeState
from pinaivu_local.receipts.document import MalformedReceipt, SignedReceipt
from pinaivu_local.receipts.verify import Outcome, check_signature
from pinaivu_local.wire import RECEIPT_FIELD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteRequest:
    """What the gateway sends a node: the path under /v1 and the body (always a stream with usage)."""

    model: str
    path: str  # "/chat/completions" or "/completions"
    body: dict[str, Any]
    prompt_tokens: int  # counted by the gateway (or estimated): used when a node reports no usage
    # What it may cost: the prompt's upper bound and the completion budget (max_tokens, or the reservation's).
    bounds: UsageBounds = field(default_factory=lambda: UsageBounds(prompt=1 << 20, completion=1 << 20))
    top_logprobs: int | None = None  # logprobs asked, with this many alternatives a token (None: not asked)

    @property
    def budget(self) -> int:
        """The most completion tokens the node may send."""
        return self.bounds.completion


@dataclass
class _Progress:
    """What one node has sent of one request so far, as the gateway counts it."""

    chunks: int = 0  # chunks with text (content or a call's arguments): at least one token each
    logprobs: int = 0  # logprobs entries: one a token
    text_bytes: int = 0
    reported: int = 0  # the completion tokens a node reports as it goes (vLLM's continuous usage), if sane
    receipt: Any = None  # a pinaivu node's receipt envelope (on its last chunk), as it signed it
    usage: Usage | None = None  # the final count, once the stream ended
    source: Literal["node", "gateway"] = "gateway"  # who counted `usage`
    misbehaved: str | None = None  # a bound the node passed without breaking the answer: counted against it
    misbehaved_class: ErrorClass = "bound"

    @property
    def generated(self) -> int:
        """Completion tokens so far: the node's final count, else the most either side has counted."""
        return self.usage.completion_tokens if self.usage else max(self.chunks, self.reported)


# Opens the request on another node, leaving out those tried: (node, response), or raises Unavailable.
Reopen = Callable[[set[str]], Awaitable[tuple[NodeState, httpx.Response]]]


class RemoteGeneration:
    """The async side of one request on a node: iterate for Deltas; close() cancels it. Moves to another
    node, invisibly, when its node fails before the first text (`buffered`, for a client that gets the
    answer whole: before the end); after that, the failure is an error."""

    def __init__(
        self,
        request: RemoteRequest,
        node: NodeState,
        response: httpx.Response,
        reopen: Reopen,
        *,
        buffered: bool,
        limits: StreamLimits,
    ) -> None:
        self._request = request
        self._buffered = buffered
        self._reopen = reopen
        self._limits = limits
        self._node = node
        self._response = response
        self._tried = {node.name}
        self._submitted = time.monotonic()
        self._connected: float | None = time.monotonic()
        self._first_token: float | None = None
        self._finished: float | None = None
        self._progress = _Progress()
        self._verified: bool | None = None  # the current node's receipt against its pinned key, once judged
        self._closed = False
        self._holding = True  # counted in the node's in_flight (the fleet counted it when it opened)
        self._opened_at = node.reports  # the node's load reports so far: later ones count it as running

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
    def receipt_verified(self) -> bool | None:
        """Whether the node's receipt verified against the key the gateway pinned for it (None: no receipt)."""
        return self._verified

    @property
    def usage_source(self) -> Literal["node", "gateway"]:
        """Who counted its tokens: the node (its report, found sane) or the gateway."""
        return self._progress.source

    @property
    def receipt(self) -> SignedReceipt | None:
        """The node's own signed receipt, exactly as it sent it (None: a node without receipts, or a
        malformed one). The gateway keeps it; it signs nothing for a node."""
        envelope = self._progress.receipt
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
                        text = "".join(delta.text for delta in held[:-1])
                        entries = [entry for delta in held[:-1] for entry in delta.logprobs or ()]
                        if text or entries:
                            yield Delta(text, logprobs=tuple(entries) if entries else None)
                        yield held[-1]
                    else:
                        async for delta in self._read():
                            yield delta
                    return
                except NodeDropped as exc:
                    log.warning("node %s dropped a request: %s", self._node.name, exc.reason)
                    if exc.error_class == "untrusted":
                        self._node.distrust(exc.reason)
                    else:
                        self._node.down(exc.reason, exc.error_class)
                    if self._first_token is not None and not self._buffered:
                        raise EngineFailure(
                            f"The node {self._node.name} failed while streaming ({self._node.last_error}); the "
                            "output is incomplete. Retry the request."
                        ) from None
                    self._first_token = None
                    await self._move()
        finally:
            self._finished = self._finished or time.monotonic()
            await self._release()

    async def _read(self) -> AsyncIterator[Delta]:
        """The current node's deltas, counted."""
        self._progress = _Progress()
        self._verified = None
        deadline = asyncio.get_running_loop().time() + self._limits.deadline_s
        async for delta in _deltas(self._response, self._request, self._limits, deadline, self._progress):
            if self._first_token is None:
                self._first_token = time.monotonic()
            if delta.finish_reason is not None:  # judged now: a whole answer's reader stops at this delta
                self._judge()
            yield delta

    def _judge(self) -> None:
        """At the stream's end: a node that passed a bound without breaking the answer is out of rotation
        until it checks well again; a receipt that does not verify against the node's pinned key makes it
        untrusted (a whole answer moves to another node); one that behaved and whose receipt verified
        teaches which model file it holds (replays trust only that)."""
        failure = self._check_receipt()
        if failure is not None:
            log.warning("node %s sent a receipt that does not verify: %s", self._node.name, failure)
            if self._buffered:  # nothing reached the client yet: another node answers instead
                raise NodeDropped(failure, "untrusted")
            self._node.distrust(failure)
        if self._progress.misbehaved:
            log.warning("node %s misbehaved: %s", self._node.name, self._progress.misbehaved)
            self._node.down(self._progress.misbehaved, self._progress.misbehaved_class)
        elif self._verified and self.model_sha256:
            self._node.hashes[self._request.model] = self.model_sha256

    def _check_receipt(self) -> str | None:
        """Set the verdict on the node's receipt; the reason it failed, or None (verified, or none sent)."""
        if self._progress.receipt is None:
            return None
        receipt, keys = self.receipt, self._node.keys
        self._verified = False
        if receipt is None:
            return "a malformed receipt"
        if keys is None:
            return "a receipt from a node whose key is not pinned"
        finding = check_signature(receipt, keys)
        if finding.outcome is not Outcome.VALID:
            return f"its receipt does not verify against its pinned key: {finding.message}"
        if receipt.document["model"] != self._request.model:
            return f"its receipt names model {str(receipt.document['model'])[:100]!r}, not the one asked"
        self._verified = True
        return None

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
        """Prompt plus tokens generated so far: the node's sane count at the end; cut short, the most the
        node reported as it went or the chunks of text that arrived (each at least one token)."""
        usage = self._progress.usage
        prompt = usage.prompt_tokens if usage else self._request.prompt_tokens
        return prompt + self._progress.generated

    def close(self) -> None:
        """Stop: the node's stream is closed, which cancels the request there."""
        if self._closed:
            return
        self._closed = True
        self._finished = self._finished or time.monotonic()
        if self._holding:
            with contextlib.suppress(RuntimeError):  # no running loop: the client closes it at shutdown
                asyncio.get_running_loop().create_task(self._release())


async def _deltas(
    response: httpx.Response, request: RemoteRequest, limits: StreamLimits, deadline: float, progress: _Progress
) -> AsyncIterator[Delta]:
    """A node's SSE stream as Deltas, within bounds (node_stream.py); the last one carries the finish reason
    and the usage, sane or counted here. A node sending more text than the budget ends it there: finish
    `length`, the node counted against."""
    finish: FinishReason | None = None
    reported: object = None
    budget = request.budget
    reader = ChoiceReader(request.top_logprobs)
    try:
        async for data in data_events(response, limits, deadline=deadline, budget=budget):
            if data == "[DONE]":
                break
            chunk = await parsed(data)
            if not isinstance(chunk, dict):
                raise NodeDropped(f"not an OpenAI stream (an event is {type(chunk).__name__})")
            if "error" in chunk:
                error = chunk["error"]
                message = error.get("message", error) if isinstance(error, dict) else error
                raise NodeDropped(f"error event: {str(message)[:200]}", "error_event")
            receipt = chunk.get(RECEIPT_FIELD)
            if receipt:
                if len(json.dumps(receipt)) > MAX_RECEIPT_BYTES:
                    raise NodeDropped(f"a receipt over {MAX_RECEIPT_BYTES} bytes", "bound")
                progress.receipt = receipt
            if chunk.get("usage") is not None:
                reported = chunk["usage"]
                _running(progress, reported, budget)
            for choice in chunk.get("choices") or []:
                piece = reader.read(choice)
                progress.chunks += piece.tokens
                progress.text_bytes += len(piece.text.encode())
                progress.logprobs += len(piece.logprobs or ())
                if (
                    progress.chunks > budget
                    or progress.logprobs > budget
                    or progress.text_bytes > budget * MAX_TOKEN_TEXT_BYTES
                ):
                    progress.misbehaved = f"sent more than the {budget} tokens asked"
                    progress.usage = Usage(request.prompt_tokens, budget)
                    yield Delta("", "length", progress.usage)
                    return
                if piece.text or piece.logprobs:
                    yield Delta(piece.text, logprobs=piece.logprobs)
                if choice.get("finish_reason"):
                    finish = "length" if choice["finish_reason"] == "length" else "stop"
    except httpx.TimeoutException:
        raise NodeDropped("timed out", "timeout") from None
    except httpx.TransportError as exc:
        raise NodeDropped(f"connection lost ({exc.__class__.__name__})", "connection") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NodeDropped(f"not an OpenAI stream ({exc.__class__.__name__})") from None
    if finish is None:
        raise NodeDropped("the stream ended without a finish reason")
    closing = reader.finish()
    if closing:
        yield Delta(closing)
    yield Delta("", finish, _final_usage(request, reported, progress))


def _running(progress: _Progress, usage: object, budget: int) -> None:
    """A count the node reports as it goes (vLLM's continuous usage), kept where it is a sane number."""
    count = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if type(count) is int and 0 <= count <= budget:
        progress.reported = max(progress.reported, count)


def _final_usage(request: RemoteRequest, reported: object, progress: _Progress) -> Usage:
    """The node's usage where it is sane; else counted here: the prompt as the gateway counted it (or its
    estimate), a token per chunk of text (each carries one token's text on the servers we know)."""
    if reported is not None:
        checked = request.bounds.check(reported, progress.chunks)
        if isinstance(checked, Usage):
            progress.usage, progress.source = checked, "node"
            return checked
        progress.misbehaved, progress.misbehaved_class = f"reported impossible usage: {checked}", "usage"
    # An OpenAI-compatible server that sends no usage (llama_cpp.server), or one not to be believed.
    progress.usage = Usage(request.prompt_tokens, max(progress.chunks, progress.reported))
    return progress.usage
