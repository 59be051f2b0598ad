"""The key store: API keys in the SQLite database, only their hashes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlmodel import select

from pinaivu_local.clock import as_utc, utcnow
from pinaivu_local.errors import AuthenticationError, KeyNotActive, KeyNotFound
from pinaivu_local.keys.material import generate_key, hash_key, visible_prefix
from pinaivu_local.keys.records import ApiKey
from pinaivu_local.keys.usage import KeyUsage
from pinaivu_local.storage.database import Database

# Per-minute limits a key may have: far above what one box serves, far below a 64-bit column.
MAX_RPM = 1_000_000
MAX_TPM = 1_000_000_000

MAX_PARSED_KEYS = 1024  # key rows kept validated (see KeyStore._record); past that the memo starts over

P = ParamSpec("P")
T = TypeVar("T")

_KEYS = ApiKey.__table__  # type: ignore[attr-defined]
_BY_HASH = core_select(_KEYS).where(_KEYS.c.key_hash == bindparam("digest"))
# What decides whether a key is accepted: every column but its last-use time, which the request log
# rewrites with every batch (authentication does not use it).
_DECIDING = core_select(*(c for c in _KEYS.c if c.name != "last_used_at")).where(
    _KEYS.c.key_hash == bindparam("digest")
)


@dataclass(frozen=True)
class KeySettings:
    """What a new key may do."""

    name: str
    admin: bool = False
    models: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    expires_in: timedelta | None = None


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only moment its clear text exists."""

    record: ApiKey
    key: str


class KeyStore:
    """Create, look up, revoke and rotate keys. Safe to use from the CLI while a server runs.

    Authentication never writes: last-use times go to `usage` (in memory), which the server's request
    log writes to the database; what this store returns shows the newest of the two.
    """

    def __init__(self, database: Database, usage: KeyUsage | None = None) -> None:
        self._db = database
        self._session = database.session
        self.usage = usage if usage is not None else KeyUsage()
        self._parsed: dict[str, tuple[tuple[Any, ...], ApiKey]] = {}  # digest -> (deciding columns, record)

    @property
    def local(self) -> bool:
        """Whether the keys are in a local SQLite file (a lookup is quick), not on a database server."""
        return self._db.dialect == "sqlite"

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """One of this store's methods, for the event loop: on a worker thread, bounded (Database.call)."""
        return await self._db.call(fn, *args, **kwargs)

    def is_empty(self) -> bool:
        """Whether no key was ever created."""
        with self._session() as session:
            return session.exec(select(ApiKey).limit(1)).first() is None

    def create(self, settings: KeySettings, *, key: str | None = None) -> IssuedKey:
        """A new key with these settings (`key` imports an existing one, e.g. PINAIVU_API_KEY)."""
        clear = key or generate_key()
        now = utcnow()
        record = ApiKey(
            id=f"key_{uuid.uuid4().hex[:16]}",
            name=settings.name,
            prefix=visible_prefix(clear),
            key_hash=hash_key(clear),
            admin=settings.admin,
            models=",".join(settings.models),
            rpm=settings.rpm,
            tpm=settings.tpm,
            created_at=now,
            expires_at=now + settings.expires_in if settings.expires_in else None,
        )
        with self._session() as session:
            session.add(record)
            session.commit()
        return IssuedKey(record=record, key=clear)

    def has_key(self, key: str) -> bool:
        """Whether this clear key was ever stored (revoked ones included)."""
        with self._session() as session:
            return session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first() is not None

    def list(self) -> list[ApiKey]:
        """Every key, newest first."""
        with self._session() as session:
            records = list(session.exec(select(ApiKey).order_by(ApiKey.created_at.desc())))  # type: ignore[attr-defined]
        return [self.usage.newest(record) for record in records]

    def get(self, key_id: str) -> ApiKey:
        """One key by id, or KeyNotFound."""
        with self._session() as session:
            record = session.get(ApiKey, key_id)
        if record is None:
            raise KeyNotFound(f"No key with id {key_id!r}; list them with `pinaivu-local keys list`.", param="id")
        return self.usage.newest(record)

    def update(self, key_id: str, **changes: Any) -> ApiKey:
        """Change name, models, rpm or tpm of a key."""
        with self._session() as session:
            record = session.get(ApiKey, key_id)
            if record is None:
                raise KeyNotFound(f"No key with id {key_id!r}.", param="id")
            for field, value in changes.items():
                setattr(record, field, value)
            session.add(record)
            session.commit()
        return self.usage.newest(record)

    def _record(self, digest: str, values: tuple[Any, ...]) -> ApiKey | None:
        """The key's record, validated once per distinct row (`values`: its columns as the driver gave them):
        validating a table model costs more than the query. The row is read on every request, so any
        change to it (revoked, edited) is validated afresh and takes effect at once. None: it is gone."""
        memo = self._parsed.get(digest)
        if memo is not None and memo[0] == values:
            return memo[1]
        # A new or changed row (rare) is read again through SQLAlchemy, whose column types turn the
        # driver's values into the record's (SQLite gives times as text).
        with self._db.connection() as conn:
            row = conn.execute(_BY_HASH, {"digest": digest}).first()
        if row is None:
            return None
        record = ApiKey.model_validate(dict(row._mapping))
        if len(self._parsed) >= MAX_PARSED_KEYS:
            self._parsed.clear()
        self._parsed[digest] = (values, record)
        return record

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); the running server refuses it from its next request."""
        record = self.get(key_id)
        if record.revoked_at is not None:
            return record
        return self.update(key_id, revoked_at=utcnow())

    def rotate(self, key_id: str) -> IssuedKey:
        """Revoke a key and issue a replacement with the same settings and remaining lifetime.

        Only an active key is rotated: a revoked one stays dead (KeyNotActive), however often asked.
        """
        old = self.get(key_id)
        if old.revoked_at is not None:
            replaced = f" It was replaced by {old.replaced_by}." if old.replaced_by else ""
            raise KeyNotActive(
                f"The key {key_id} is revoked and cannot be rotated.{replaced} Create a new key instead "
                "(POST /admin/keys or `pinaivu-local keys create`)."
            )
        now = utcnow()
        expires, created = as_utc(old.expires_at), as_utc(old.created_at)
        remaining = None
        if expires is not None and created is not None:
            # an expired key's replacement gets the lifetime the old one had
            remaining = expires - now if expires > now else expires - created
        issued = self.create(
            KeySettings(
                name=old.name,
                admin=old.admin,
                models=tuple(old.model_list()),
                rpm=old.rpm,
                tpm=old.tpm,
                expires_in=remaining,
            )
        )
        self.update(key_id, revoked_at=old.revoked_at or now, replaced_by=issued.record.id)
        return issued

    def authenticate(self, key: str) -> ApiKey:
        """The active key record for a clear key; AuthenticationError says why not. Reads only.

        The record may be shared between requests (its last-use time set to the newest this process saw):
        read it, never change it.
        """
        digest = hash_key(key)
        # Every request comes here: one query at the driver's level, no ORM session or Core connection
        # (each cost more than the query). Read each time (only its validation is memoized, per row), so a
        # key revoked by the CLI or another gateway is refused at once.
        # The lookup is by an unguessable digest, so timing reveals nothing about stored keys.
        values = self._db.first_row(_DECIDING, {"digest": digest})
        record = None if values is None else self._record(digest, values)
        if record is None:
            raise AuthenticationError(
                "Incorrect API key provided. Check it, or create one with `pinaivu-local keys create`.",
                code="invalid_api_key",
            )
        now = utcnow()
        state = record.state(now)
        if state == "revoked":
            raise AuthenticationError(
                f"This API key ({record.prefix}, {record.name!r}) has been revoked. "
                "Use its replacement or create a new key.",
                code="revoked_api_key",
            )
        if state == "expired":
            raise AuthenticationError(
                f"This API key ({record.prefix}, {record.name!r}) expired on "
                f"{record.public(now)['expires_at']}. Rotate it or create a new key.",
                code="expired_api_key",
            )
        self.usage.touch(record.id, now)
        return self.usage.newest(record)
