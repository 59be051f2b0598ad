"""Health checks: each node's /v1/models (and, for pinaivu nodes, /health) every few seconds."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from pinaivu_local.fleet.nodes import NodeSpec
from pinaivu_local.fleet.state import ModelLoad, NodeState

log = logging.getLogger(__name__)


# How long a health check may take at least.
CHECK_TIMEOUT_S = 5.0


class NodeUnhealthy(Exception):
    """A node answered, but says it cannot serve."""


class HealthPoller:
    """Polls every node at once, every `interval_s`; a node that answers is up, else down with the reason."""

    def __init__(self, nodes: list[NodeState], client: httpx.AsyncClient, *, interval_s: float) -> None:
        self._nodes = nodes
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
        except Exception as exc:  # any failure, of any kind, takes the node out of rotation
            node.down(_reason(exc))
        else:
            node.up(models)
        if node.condition != was:
            log.warning(
                "node %s is %s%s",
                node.name,
                node.condition,
                f" ({node.last_error})" if node.condition == "down" else "",
            )

    async def _check(self, spec: NodeSpec) -> dict[str, ModelLoad]:
        headers = {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        listed = await self._client.get(f"{spec.v1}/models", headers=headers, timeout=self._timeout_s)
        listed.raise_for_status()
        models = {m["id"]: ModelLoad(info=m, slots=spec.slots) for m in listed.json()["data"]}
        if spec.kind == "pinaivu":
            health = _json(await self._client.get(f"{spec.url}/health", timeout=self._timeout_s))
            if health.get("status") == "unavailable":
                raise NodeUnhealthy(f"its /health says unavailable (storage {health.get('storage', {}).get('state')})")
            for status in health.get("models", []):
                load = models.get(status.get("id"))
                if load is not None:
                    load.slots, load.running, load.queued = status["slots"], status["running"], status["queued"]
            models = {m: load for m, load in models.items() if load.slots > 0}
        return models


def _json(response: httpx.Response) -> dict[str, Any]:
    # /health answers 503 with the same body when the node is degraded: its models still say their state.
    if response.status_code not in (200, 503):
        response.raise_for_status()
    body = response.json()
    return body if isinstance(body, dict) else {}


def _reason(exc: BaseException) -> str:
    """A failure in a few words, for /health."""
    if isinstance(exc, NodeUnhealthy):
        return str(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url.path}"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    return f"{exc.__class__.__name__}: {exc}"[:200]
