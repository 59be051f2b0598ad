"""The api_keys table, and the public view of a key (never its hash)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from pinaivu_local.clock import as_utc, utcnow


class ApiKey(SQLModel, table=True):
    """One key. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    name: str
    prefix: str
    key_hash: str = Field(unique=True, index=True)
    admin: bool = False
    models: str = ""  # comma-separated model ids; empty = every model
    rpm: int | None = None
    tpm: int | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    replaced_by: str | None = None

    def model_list(self) -> list[str]:
        """Allowed model ids; empty means all."""
        return [m for m in self.models.split(",") if m]

    def state(self, now: datetime) -> str:
        """active, revoked or expired."""
        if self.revoked_at is not None:
            return "revoked"
        expires = as_utc(self.expires_at)
        if expires is not None and expires <= now:
            return "expired"
        return "active"

    def public(self, now: datetime | None = None) -> dict[str, Any]:
        """What the CLI and admin API show: everything but the hash."""
        moment = now or utcnow()

        def iso(value: datetime | None) -> str | None:
            value = as_utc(value)
            return value.isoformat().replace("+00:00", "Z") if value else None

        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "state": self.state(moment),
            "admin": self.admin,
            "models": self.model_list(),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "replaced_by": self.replaced_by,
        }
