"""The fleet: the nodes a gateway routes to, kept up to date by health checks, and how a request is
placed on one of them (with failover before its first token)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pinaivu_local.engine.generation import Generation
from pinaivu_local.errors import (
    EngineFailure,
    InvalidRequest,
    ModelNotFound,
    PinaivuError,
    Unavailable,
    ValidationFailed,
)
from pinaivu_local.fleet.node_stream import StreamLimits
from pinaivu_local.fleet.nodes import LOCAL, NodeSpec
from pinaivu_local.fleet.pins import NodePins
from pinaivu_local.fleet.poller import HealthPoller
from pinaivu_local.fleet.remote import RemoteGeneration, RemoteRequest
from pinaivu_local.fleet.router import Router
from pinaivu_local.fleet.state import ModelLoad, NodeState
from pinaivu_local.suggest import suggest
from pinaivu_local.wire import STREAM_INTERVAL_HEADER

log = logging.getLogger(__name__)


# Carries the current span (OpenTelemetry's context, set while a traced request is served) to nodes.
_TRACE_CONTEXT = TraceContextTextMapPropagator()

# What the gateway's own engine gives back when it takes a request itself.
LocalT = TypeVar("LocalT", bound=Generation)


class Fleet:
    """The nodes of one gateway (its own engine included, as `local`), their health and the router."""

    def __init__(
        self,
        specs: list[NodeSpec],
        *,
        local_models: Callable[[], dict[str, ModelLoad]] | None,
        local_hash: Callable[[str], str | None] = lambda _model: None,
        poll_s: float,
        timeout_s: float,
        deadline_s: float = 900.0,
        pins: NodePins | None = None,
    ) -> None:
        self._local_models = local_models
        self.pins = pins  # each node's pinned signing key (fleet/pins.py); None: trusted as each says
        self._local_hash = local_hash
        self.nodes = [NodeState(spec) for spec in specs]
        self._local = NodeState(NodeSpec(name=LOCAL, url="", kind="pinaivu")) if local_models else None
        self._router = Router(self._all())
        self._poll_s = poll_s
        self._timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self._limits = StreamLimits(idle_s=timeout_s, deadline_s=deadline_s)
        self._client: httpx.AsyncClient | None = None

    def _all(self) -> list[NodeState]:
        return [*([self._local] if self._local else []), *self.nodes]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Health checks run (the first round before this returns) until the block ends."""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            self._client = client
            poller = HealthPoller(self.nodes, client, interval_s=self._poll_s, pins=self.pins)
            await poller.poll_all()
            task = asyncio.create_task(poller.run())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self._client = None

    def _refresh_local(self) -> None:
        if self._local is not None and self._local_models is not None:
            models = self._local_models()
            self._local.up(models) if models else self._local.down("no model is ready", "unhealthy")
            self._local.hashes = {m: h for m in models if (h := self._local_hash(m))}

    def states(self) -> list[NodeState]:
        """Every node, the gateway's own first."""
        self._refresh_local()
        return self._all()

    def model_objects(self) -> list[dict[str, Any]]:
        """What at least one node that is up serves: each model once, as the first node listing it says."""
        seen: dict[str, dict[str, Any]] = {}
        for node in self.states():
            if node.condition == "up":
                for model, load in node.models.items():
                    seen.setdefault(model, load.info)
        return list(seen.values())

    def context_length(self, model: str) -> int | None:
        """The model's context as a node serving it says (None where none says)."""
        for node in self._router.candidates(model):
            length = node.models[model].info.get("context_length")
            if isinstance(length, int):
                return length
        return None

    def check_model(self, model: str) -> None:
        """ModelNotFound unless some node (up or down) has listed it; Unavailable when none that lists it is up."""
        self._refresh_local()
        if not self._router.known(model):
            served = [m["id"] for m in self.model_objects()]
            hint = suggest(model, served)
            did_you_mean = f" Did you mean `{hint}`?" if hint else ""
            raise ModelNotFound(
                f"The model `{model}` is not served by any node.{did_you_mean} Served models: "
                f"{', '.join(served) or 'none'}. Use an id from GET /v1/models verbatim.",
                param="model",
            )
        if not self._router.candidates(model):
            raise self._no_nodes(model)

    def remote_nodes(self, model: str) -> list[NodeState]:
        """The nodes other than the gateway's own that could run `model` now, best first."""
        self._refresh_local()
        return self._router.candidates(model, exclude={LOCAL})

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client nodes are reached with (while the fleet runs)."""
        if self._client is None:
            raise EngineFailure("the fleet is not running (a bug: its lifespan has not started)")
        return self._client

    @property
    def limits(self) -> StreamLimits:
        """How long a node may be silent, and take in all."""
        return self._limits

    def no_nodes(self, model: str) -> Unavailable:
        """The 503 for a model no node can take now."""
        return self._no_nodes(model)

    def local_serves(self, model: str) -> bool:
        """Whether the gateway's own engine has this model ready."""
        return self._local is not None and self._local.serves(model)

    async def start(
        self,
        request: RemoteRequest,
        prefix: str,
        local_start: Callable[[], LocalT] | None,
        *,
        buffered: bool,
        model_sha256: str | None = None,
    ) -> LocalT | RemoteGeneration:
        """Run the request on the best node that takes it: the gateway's own (`local_start`) or another.

        A node that refuses, is unreachable or times out is left for the next (`buffered`: the client
        gets the answer whole, so a node may fail at any point before its end); Unavailable
        (no_nodes_available, with Retry-After) when none takes it. `model_sha256` (a verification replay)
        admits only the nodes known to hold that model file.
        """
        self._refresh_local()
        if model_sha256 is not None and not self._router.candidates(request.model, model_sha256=model_sha256):
            raise Unavailable(
                f"No node that is up is known to hold the model file this request ran on (`{request.model}`, "
                f"SHA-256 {model_sha256}): none is available to replay it.",
                retry_after=max(1, math.ceil(self._poll_s)),
            )
        for node in self._router.pick(request.model, prefix, model_sha256=model_sha256):
            if node is self._local:
                if local_start is None:
                    continue
                try:
                    generation = local_start()
                except Unavailable:
                    continue  # queue full or recovering: another node may take it
                self._router.served(prefix, LOCAL)
                return generation
            opened = await self._try(node, request)
            if opened is not None:
                self._router.served(prefix, node.name)
                reopen = self._reopener(request, model_sha256)
                return RemoteGeneration(request, node, opened, reopen, buffered=buffered, limits=self._limits)
        raise self._no_nodes(request.model)

    def _reopener(self, request: RemoteRequest, model_sha256: str | None) -> Callable[[set[str]], Any]:
        async def reopen(tried: set[str]) -> tuple[NodeState, httpx.Response]:
            others = self._router.candidates(request.model, exclude=tried | {LOCAL}, model_sha256=model_sha256)
            for node in others:
                opened = await self._try(node, request)
                if opened is not None:
                    return node, opened
                tried.add(node.name)
            raise self._no_nodes(request.model)

        return reopen

    async def _try(self, node: NodeState, request: RemoteRequest) -> httpx.Response | None:
        """The node's streaming response once its status is 200, else None (the node is taken out of
        rotation unless it was only busy); a node's refusal of the request itself is raised as the client's."""
        if self._client is None:
            raise EngineFailure("the fleet is not running (a bug: its lifespan has not started)")
        # Every token at once: a stream cut short is counted by its chunks (api/http/stream_pacing.py).
        # Its body as sent: a compressed one would be inflated in memory past every bound (node_stream.py).
        headers = {STREAM_INTERVAL_HEADER: "0", "accept-encoding": "identity"}
        if node.spec.api_key:
            headers["authorization"] = f"Bearer {node.spec.api_key}"
        # The request's span (api/http/tracing.py) as the node's parent: W3C traceparent. None, none sent.
        _TRACE_CONTEXT.inject(headers)
        sent = self._client.build_request("POST", f"{node.spec.v1}{request.path}", json=request.body, headers=headers)
        node.in_flight += 1  # counted from now: requests placed meanwhile see this one
        try:
            # To its headers within the timeout, however slowly a node trickles them (each byte resets httpx's).
            async with asyncio.timeout(self._limits.idle_s):
                response = await self._client.send(sent, stream=True)
        except (httpx.TimeoutException, TimeoutError):
            node.in_flight -= 1
            node.down("timed out", "timeout")
            return None
        except httpx.TransportError as exc:
            node.in_flight -= 1
            node.down(f"connection failed ({exc.__class__.__name__})", "connection")
            return None
        if response.status_code == 200:
            return response
        node.in_flight -= 1
        status = response.status_code
        body = await _bounded_body(response)
        if status in _THE_REQUESTS_OWN:
            # The request itself is refused (too long for the node's context, a field it does not take):
            # any node would say the same. The client's answer; the node stays in rotation.
            raise _client_error(status, node.spec.redacted(body), node.name)
        if status >= 500 and status != 503:  # only a failure of the node's own counts against it
            node.down(f"HTTP {status} to {request.path}", "http_status")
        # Busy (408, 429, 503), or refusing the gateway itself (401, 403: its node key; 404: a model it
        # no longer serves): another node may take it.
        log.warning("node %s refused a request: HTTP %s %s", node.name, status, node.spec.redacted(body[:200]))
        return None

    def _no_nodes(self, model: str) -> Unavailable:
        return Unavailable(
            f"No node can take a request for `{model}` now: all nodes serving it are at capacity or the "
            "network is recovering. Retry shortly.",
            retry_after=max(1, math.ceil(self._poll_s)),
        )


# A node's answers that refuse the request itself rather than the node being unable to take it now.
_THE_REQUESTS_OWN = frozenset({400, 409, 411, 413, 415, 422})
# What is read of a node's refusal: enough for any error message, never a node's whole body.
MAX_REFUSAL_BYTES = 64 * 1024


async def _bounded_body(response: httpx.Response) -> str:
    """The start of a refusal's body (at most MAX_REFUSAL_BYTES), the rest left unread."""
    read = b""
    try:
        async for chunk in response.aiter_raw():  # as sent: never inflated past the bound
            read += chunk
            if len(read) >= MAX_REFUSAL_BYTES:
                break
    except httpx.HTTPError:
        pass  # what arrived is all there is
    finally:
        await response.aclose()
    return read[:MAX_REFUSAL_BYTES].decode(errors="replace")


def _client_error(status: int, body: str, node: str) -> PinaivuError:
    """A node's refusal of the request itself as our own error: OpenAI's envelope, FastAPI's or
    pydantic's `detail`, or its text, cut short."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error = parsed["error"]
        param, code = error.get("param"), error.get("code")
        return InvalidRequest(
            str(error.get("message") or f"node {node} refused the request")[:2000],
            param=param if isinstance(param, str) else None,
            code=code if isinstance(code, str) else None,
        )
    detail = parsed.get("detail") if isinstance(parsed, dict) else None
    if status == 422 and isinstance(detail, list) and all(_is_detail_entry(d) for d in detail[:50]):
        return ValidationFailed(detail[:50])
    text = detail if isinstance(detail, str) else body.strip() or f"HTTP {status}"
    return InvalidRequest(f"The node that serves this model refused the request: {text[:2000]}")


def _is_detail_entry(entry: object) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("loc"), list) and isinstance(entry.get("msg"), str)
