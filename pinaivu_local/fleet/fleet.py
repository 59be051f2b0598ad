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

from pinaivu_local.engine.generation import Generation
from pinaivu_local.errors import EngineFailure, InvalidRequest, ModelNotFound, Unavailable
from pinaivu_local.fleet.nodes import LOCAL, NodeSpec
from pinaivu_local.fleet.poller import HealthPoller
from pinaivu_local.fleet.remote import RemoteGeneration, RemoteRequest
from pinaivu_local.fleet.router import Router
from pinaivu_local.fleet.state import ModelLoad, NodeState
from pinaivu_local.suggest import suggest
from pinaivu_local.wire import STREAM_INTERVAL_HEADER

log = logging.getLogger(__name__)


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
    ) -> None:
        self._local_models = local_models
        self._local_hash = local_hash
        self.nodes = [NodeState(spec) for spec in specs]
        self._local = NodeState(NodeSpec(name=LOCAL, url="", kind="pinaivu")) if local_models else None
        self._router = Router(self._all())
        self._poll_s = poll_s
        self._timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self._client: httpx.AsyncClient | None = None

    def _all(self) -> list[NodeState]:
        return [*([self._local] if self._local else []), *self.nodes]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Health checks run (the first round before this returns) until the block ends."""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            self._client = client
            poller = HealthPoller(self.nodes, client, interval_s=self._poll_s)
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
            self._local.up(models) if models else self._local.down("no model is ready")
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
                return RemoteGeneration(request, node, opened, self._reopener(request, model_sha256), buffered=buffered)
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
        headers = {STREAM_INTERVAL_HEADER: "0"}
        if node.spec.api_key:
            headers["authorization"] = f"Bearer {node.spec.api_key}"
        sent = self._client.build_request("POST", f"{node.spec.v1}{request.path}", json=request.body, headers=headers)
        node.in_flight += 1  # counted from now: requests placed meanwhile see this one
        try:
            response = await self._client.send(sent, stream=True)
        except httpx.TimeoutException:
            node.in_flight -= 1
            node.down("timed out")
            return None
        except httpx.TransportError as exc:
            node.in_flight -= 1
            node.down(f"connection failed ({exc.__class__.__name__})")
            return None
        if response.status_code == 200:
            return response
        node.in_flight -= 1
        body = (await response.aread()).decode(errors="replace")
        await response.aclose()
        if response.status_code in (400, 404, 413, 422) and node.spec.kind == "pinaivu":
            _raise_as_client_error(body)
        if response.status_code not in (429, 503):  # busy is not broken: it stays in rotation
            node.down(f"HTTP {response.status_code} to {request.path}")
        log.warning("node %s refused a request: HTTP %s %s", node.name, response.status_code, body[:200])
        return None

    def _no_nodes(self, model: str) -> Unavailable:
        return Unavailable(
            f"No node can take a request for `{model}` now: all nodes serving it are at capacity or the "
            "network is recovering. Retry shortly.",
            retry_after=max(1, math.ceil(self._poll_s)),
        )


def _raise_as_client_error(body: str) -> None:
    """A pinaivu node refused the request itself (too long for its context, say): the client's error."""
    try:
        error = json.loads(body)["error"]
        message, code, param = str(error["message"]), error.get("code"), error.get("param")
    except (ValueError, KeyError, TypeError):
        return
    raise InvalidRequest(message, param=param, code=code)
