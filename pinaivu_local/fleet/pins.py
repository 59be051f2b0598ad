"""Each node's signing key as the gateway pinned it on first contact (its /v1/node), kept in the database.

A gateway believes a node's receipts only when they verify against the key it pinned (or a key the node
published since as that key's rotation). `NodePins` is the store: `get(name)`, `pin(...)` (first contact:
keeps an existing pin), `trust(...)` (replaces it on purpose: `pinaivu-local nodes trust NAME`). Its
methods block on the database: the event loop calls them through `Database.call`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel, select

from pinaivu_local.clock import as_utc, utcnow
from pinaivu_local.receipts.document import MalformedReceipt
from pinaivu_local.receipts.identity import PublicKey
from pinaivu_local.receipts.verify import TrustedKeys
from pinaivu_local.storage.database import Database


class NodePin(SQLModel, table=True):
    """One node's pinned signing key: its name in the nodes file, its URL then, its node id and key."""

    __tablename__ = "node_pins"

    name: str = Field(primary_key=True)
    url: str
    node_id: str
    key_id: str
    public_key: str  # base64 of the raw 32-byte Ed25519 key
    pinned_at: datetime

    def key(self) -> PublicKey:
        """The pinned key as the receipts module reads keys."""
        return PublicKey(self.key_id, self.public_key, "")

    def public(self) -> dict[str, Any]:
        """The pin for /health (admin) and `nodes trust --json`."""
        pinned = as_utc(self.pinned_at)
        return {
            "node_id": self.node_id,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "pinned_at": pinned.isoformat().replace("+00:00", "Z") if pinned else None,
        }


class NodeKeys:
    """A node's /v1/node document, checked: its node id, current key and every key it lists."""

    def __init__(self, document: Any) -> None:
        self.trusted = TrustedKeys.from_node_document(document)  # MalformedReceipt when it is not one
        current = document["current_key"]
        self.node_id = str(document["node_id"])
        self.current = self.trusted.keys[str(current["key_id"])]

    def continues(self, pin: NodePin) -> bool:
        """Whether this document keeps the pin: the same node, and the pinned key listed (current, or
        retired by a published rotation) with the same public key."""
        listed = self.trusted.keys.get(pin.key_id)
        return self.node_id == pin.node_id and listed is not None and listed.public_key == pin.public_key


def node_keys(document: Any) -> NodeKeys:
    """A /v1/node answer checked as one (MalformedReceipt names what is wrong)."""
    try:
        return NodeKeys(document)
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedReceipt(f"not a /v1/node document ({exc.__class__.__name__}: {exc})") from None


class NodePins:
    """The gateway's pinned node keys (table node_pins), on SQLite or Postgres alike."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, name: str) -> NodePin | None:
        """The pin of the node called `name` in the nodes file, or None before first contact."""
        with self.database.session() as session:
            return session.exec(select(NodePin).where(NodePin.name == name)).first()

    def all(self) -> list[NodePin]:
        """Every pin, by name."""
        with self.database.session() as session:
            return list(session.exec(select(NodePin).order_by(NodePin.name)))

    def pin(self, name: str, url: str, keys: NodeKeys) -> NodePin:
        """First contact: pin the node's current key unless a pin exists (which is returned unchanged)."""
        with self.database.session() as session:
            existing = session.exec(select(NodePin).where(NodePin.name == name)).first()
            if existing is not None:
                return existing
            pin = _pin_of(name, url, keys)
            session.add(pin)
            session.commit()
            return pin

    def trust(self, name: str, url: str, keys: NodeKeys) -> NodePin:
        """Pin the node's current key on purpose, replacing any pin (a new key accepted, or a rotation followed)."""
        with self.database.session() as session:
            existing = session.exec(select(NodePin).where(NodePin.name == name)).first()
            if existing is not None:
                session.delete(existing)
                session.flush()
            pin = _pin_of(name, url, keys)
            session.add(pin)
            session.commit()
            return pin


def _pin_of(name: str, url: str, keys: NodeKeys) -> NodePin:
    return NodePin(
        name=name,
        url=url,
        node_id=keys.node_id,
        key_id=keys.current.key_id,
        public_key=keys.current.public_key,
        pinned_at=utcnow(),
    )
