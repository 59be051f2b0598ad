"""What a gateway knows about each node: up or down since when, its models and their load."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pinaivu_local.clock import utcnow
from pinaivu_local.fleet.nodes import NodeSpec
from pinaivu_local.receipts.verify import TrustedKeys

NodeCondition = Literal["starting", "up", "down", "untrusted"]
# What kind of failure took a node out of rotation: shown to anyone (its text only to an admin key, as a
# node's own words may say more of it than the public should read).
ErrorClass = Literal[
    "timeout", "connection", "http_status", "unhealthy", "protocol", "bound", "usage", "error_event", "untrusted"
]


@dataclass
class ModelLoad:
    """One model on one node: its OpenAI model object and, for pinaivu nodes, its load."""

    info: dict[str, Any]
    slots: int
    running: int = 0
    queued: int = 0


@dataclass
class NodeState:
    """One node as this gateway sees it; changed by the poller and by failed requests (event loop only)."""

    spec: NodeSpec
    condition: NodeCondition = "starting"
    since: datetime = field(default_factory=utcnow)
    last_error: str | None = None
    last_error_class: ErrorClass | None = None
    models: dict[str, ModelLoad] = field(default_factory=dict)
    in_flight: int = 0  # requests this gateway has running there now
    reports: int = 0  # load reports applied (health checks passed)
    # Per model: requests of this gateway that the last report counted as running and that have ended since.
    ended: dict[str, int] = field(default_factory=dict)
    # Each model's file SHA-256 as the node's own signed receipts named it (what a replay must match).
    hashes: dict[str, str] = field(default_factory=dict)
    # A pinaivu node's keys its receipts must verify against: its pinned key and those it published with it
    # (fleet/pins.py); None until first contact, or for a node that signs nothing.
    keys: TrustedKeys | None = None
    pinned: dict[str, Any] | None = None  # the pin, for /health (admin)

    @property
    def name(self) -> str:
        """The node's name in the nodes file."""
        return self.spec.name

    def serves(self, model: str) -> bool:
        """Up, and lists this model."""
        return self.condition == "up" and model in self.models

    def free(self, model: str) -> int:
        """Free slots for `model`: what the node reported (less this gateway's requests that have ended since),
        or what this gateway knows it sent, whichever is busier."""
        load = self.models[model]
        return load.slots - max(load.running + load.queued - self.ended.get(model, 0), self.in_flight)

    def finished(self, model: str, opened_at_report: int) -> None:
        """One of this gateway's requests there ended; `opened_at_report`: `reports` when it was opened."""
        self.in_flight -= 1
        if opened_at_report < self.reports:  # the last report counted it as running: it is not any more
            self.ended[model] = self.ended.get(model, 0) + 1

    def up(self, models: dict[str, ModelLoad]) -> None:
        """A health check passed (an untrusted node stays out of rotation: only `nodes trust` brings it back)."""
        self.models = models
        self.reports += 1
        self.ended.clear()
        if self.condition not in ("up", "untrusted"):
            self.condition, self.since = "up", utcnow()

    def down(self, error: str, error_class: ErrorClass) -> None:
        """A health check or a request failed: out of rotation until a check passes again."""
        if self.condition == "untrusted":
            return  # the reason it is out stays the one shown
        self.last_error, self.last_error_class = self.spec.redacted(error), error_class
        self.hashes.clear()  # it may come back with other files: learned again from its next receipts
        if self.condition != "down":
            self.condition, self.since = "down", utcnow()

    def distrust(self, error: str) -> None:
        """A receipt that does not verify against the pinned key, or a key changed without a published
        rotation: out of rotation until its key is trusted on purpose (`pinaivu-local nodes trust NAME`)."""
        if self.condition != "untrusted":
            self.last_error, self.last_error_class = self.spec.redacted(error), "untrusted"
            self.hashes.clear()
            self.condition, self.since = "untrusted", utcnow()

    def trusted_again(self) -> None:
        """Its key was trusted on purpose after it was distrusted: back in rotation once a check passes."""
        if self.condition == "untrusted":
            self.condition, self.since = "down", utcnow()

    def public(self, *, admin: bool = False) -> dict[str, Any]:
        """The node for /health: never its key; its URL and its last error's text only to an admin key
        (the class of that error to anyone)."""
        return {
            "name": self.name,
            "kind": self.spec.kind,
            "url": self.spec.url if admin else None,
            "state": self.condition,
            "since": self.since.isoformat().replace("+00:00", "Z"),
            "last_error_class": self.last_error_class,
            "last_error": self.last_error if admin else None,
            "in_flight": self.in_flight,
            "pinned_key": self.pinned if admin else None,
            "models": {
                model: {"slots": load.slots, "running": load.running, "queued": load.queued}
                for model, load in self.models.items()
            },
        }
