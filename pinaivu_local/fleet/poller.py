"""Health checks: each node's /v1/models (and, for pinaivu nodes, /health) every few seconds."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from pinaivu_local.clock import as_utc
from pinaivu_local.fleet.node_stream import parsed
from pinaivu_local.fleet.nodes import NodeSpec
from pinaivu_local.fleet.pins import NodePins, node_keys
from pinaivu_local.fleet.state import ErrorClass, ModelLoad, NodeState

log = logging.getLogger(__name__)


# How long a health check may take at least.
CHECK_TIMEOUT_S = 5.0
# The most a node's /v1/models or /health may be: a thousand models' objects fit; more is refused unread.
MAX_CHECK_BYTES = 4 * 1024 * 1024
# The most models one node may list.
MAX_MODELS = 1024


class NodeUnhealthy(Exception):
    """A node answered, but says it cannot serve."""


class HealthPoller:
    """Polls every node at once, every `interval_s`; a node that answers is up, else down with the reason."""

    def __init__(
        self, nodes: list[NodeState], client: httpx.AsyncClient, *, interval_s: float, pins: NodePins | None = None
    ) -> None:
        self._nodes = nodes
        self._pins = pins
        self._client = client
        self._interval_s = interval_s
        # A node busy computing may answer its health check late; it is not down for that.
        self._timeout_s = max(CHECK_TIMEOUT_S, 2 * interval_s)

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll_all()
            await asyncio.sleep(self._interval_s)

    async def poll_all(self) -> None:
        """One round: every node checked concurrently."""
        await asyncio.gather(*(self._poll(node) for node in self._nodes))

    async def _poll(self, node: NodeState) -> None:
        was = node.condition
        try:
            models = await self._check(node.spec)
            if node.spec.kind == "pinaivu":
                await self._check_key(node)
        except Exception as exc:  # any failure, of any kind, takes the node out of rotation
            node.down(*_reason(exc))
        else:
            node.up(models)
        if node.condition != was:
            log.warning(
                "node %s is %s%s",
                node.name,
                node.condition,
                f" ({node.last_error})" if node.condition == "down" else "",
            )

    async def _check_key(self, node: NodeState) -> None:
        """The node's signing key: pinned on first contact (its /v1/node); later it must be the pinned key or
        one published as its rotation (the pinned key listed among the node's keys), else the node is
        untrusted until `pinaivu-local nodes trust NAME` pins its new key."""
        keys = node_keys(await self._get(f"{node.spec.url}/v1/node", {}, (200,)))
        if self._pins is None:  # no store (tests of the poller alone): trusted as it says
            node.keys = keys.trusted
            return
        db = self._pins.database
        pin = await db.call(self._pins.get, node.name)
        if pin is None:
            pin = await db.call(self._pins.pin, node.name, node.spec.url, keys)
            log.warning(
                "node %s: pinned its signing key %s (node %s) on first contact", node.name, pin.key_id, pin.node_id
            )
        if node.condition == "untrusted":
            pinned_at = as_utc(pin.pinned_at)
            if pinned_at is None or pinned_at <= node.since or not keys.continues(pin):
                return  # stays out until its key is trusted on purpose, after it was distrusted
            node.trusted_again()
            log.warning("node %s: its key %s is trusted again (nodes trust)", node.name, pin.key_id)
        if not keys.continues(pin):
            node.distrust(
                f"its signing key changed without a published rotation: pinned {pin.key_id} of node "
                f"{pin.node_id}, it now shows {keys.current.key_id} of node {keys.node_id}"
            )
            return
        if keys.current.key_id != pin.key_id:  # a published rotation: the new key is pinned, the old still listed
            pin = await db.call(self._pins.trust, node.name, node.spec.url, keys)
            log.warning("node %s rotated its signing key: pinned %s", node.name, pin.key_id)
        node.keys, node.pinned = keys.trusted, pin.public()

    async def _check(self, spec: NodeSpec) -> dict[str, ModelLoad]:
        headers = {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        listed = await self._get(f"{spec.v1}/models", headers, (200,))
        data = listed.get("data")
        if not isinstance(data, list) or len(data) > MAX_MODELS:
            raise NodeUnhealthy(f"its /v1/models is not a list of at most {MAX_MODELS} models")
        models = {
            m["id"]: ModelLoad(info=m, slots=spec.slots)
            for m in data
            if isinstance(m, dict) and isinstance(m.get("id"), str)
        }
        if spec.kind == "pinaivu":
            # /health answers 503 with the same body when the node is degraded: its models still say their state.
            health = await self._get(f"{spec.url}/health", {}, (200, 503))
            if health.get("status") == "unavailable":
                storage = health.get("storage")
                state = storage.get("state") if isinstance(storage, dict) else None
                raise NodeUnhealthy(f"its /health says unavailable (storage {str(state)[:40]})")
            for status in health.get("models") or []:
                load = models.get(status.get("id")) if isinstance(status, dict) else None
                if load is not None:
                    load.slots, load.running, load.queued = (
                        _count(status, "slots"),
                        _count(status, "running"),
                        _count(status, "queued"),
                    )
            models = {m: load for m, load in models.items() if load.slots > 0}
        return models

    async def _get(self, url: str, headers: dict[str, str], statuses: tuple[int, ...]) -> dict[str, Any]:
        """A JSON object, read up to MAX_CHECK_BYTES as sent (never inflated) and parsed off the event loop
        when large."""
        request = self._client.build_request("GET", url, headers={**headers, "accept-encoding": "identity"})
        async with asyncio.timeout(self._timeout_s):
            response = await self._client.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code not in statuses:
                    raise httpx.HTTPStatusError("refused", request=request, response=response)
                body = bytearray()
                async for piece in response.aiter_raw():
                    body += piece
                    if len(body) > MAX_CHECK_BYTES:
                        raise NodeUnhealthy(f"its {request.url.path} is over {MAX_CHECK_BYTES} bytes")
            finally:
                await response.aclose()
        value = await parsed(body.decode(errors="replace"))
        if not isinstance(value, dict):
            raise NodeUnhealthy(f"its {request.url.path} is not a JSON object")
        return value


def _count(status: dict[str, Any], name: str) -> int:
    """A load figure as a node reports it: a whole number from 0 to 4096, else NodeUnhealthy."""
    value = status.get(name)
    if type(value) is not int or not 0 <= value <= 4096:
        raise NodeUnhealthy(f"its /health reports {name} {str(value)[:20]}, not a count")
    return value


def _reason(exc: BaseException) -> tuple[str, ErrorClass]:
    """A failure in a few words, for /health (the words for an admin key, the class for anyone)."""
    if isinstance(exc, NodeUnhealthy):
        return str(exc), "unhealthy"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url.path}", "http_status"
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return "timed out", "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused", "connection"
    if isinstance(exc, httpx.TransportError):
        return f"connection failed ({exc.__class__.__name__})", "connection"
    if isinstance(exc, ValueError):
        return "not JSON", "protocol"
    return f"{exc.__class__.__name__}: {exc}"[:200], "protocol"
