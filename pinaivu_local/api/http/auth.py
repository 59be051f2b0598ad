"""Who is calling: `Authorization: Bearer sk-pnv-...` checked against the key store."""

from __future__ import annotations

from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.errors import AuthenticationError
from pinaivu_local.keys.material import KEY_PREFIX
from pinaivu_local.keys.records import ApiKey
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.ratelimit.limits import Limits


class KeyAuthenticator:
    """Turns an Authorization header into a Principal, or raises AuthenticationError."""

    def __init__(self, store: KeyStore, defaults: Limits) -> None:
        self._store = store
        self._defaults = defaults

    def authenticate(self, authorization: str | None) -> Principal:
        """Look the bearer key up; the store says whether it is unknown, revoked or expired."""
        record = self._store.authenticate(bearer_token(authorization))
        return principal_of(record, self._defaults)

    async def authenticate_async(self, authorization: str | None) -> Principal:
        """authenticate() for the event loop: inline on a local SQLite file, whose lookup takes well under a
        millisecond, less than a hop to a worker thread and back, and never waits for a writer (WAL: a
        reader reads the last commit, whoever holds the write lock); on a worker thread where the key
        store is a database server (a network round trip), bounded: a server that does not answer in
        time is StorageUnavailable (503), not a request held for as long as it stalls."""
        if self._store.local:
            return self.authenticate(authorization)
        return await self._store.call(self.authenticate, authorization)


def principal_of(record: ApiKey, defaults: Limits) -> Principal:
    """A key record as the request sees it, server defaults filling absent limits."""
    return Principal(
        key_id=record.id,
        name=record.name,
        admin=record.admin,
        models=tuple(record.model_list()),
        limits=Limits(rpm=record.rpm or defaults.rpm, tpm=record.tpm or defaults.tpm),
    )


def bearer_token(authorization: str | None) -> str:
    """The key of a `Bearer sk-pnv-...` header; AuthenticationError naming what is wrong."""
    if authorization is None or not authorization.strip():
        raise AuthenticationError(
            "You didn't provide an API key. Send it in the Authorization header: `Authorization: Bearer sk-pnv-...`.",
            code="missing_api_key",
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "The Authorization header must use the Bearer scheme: `Authorization: Bearer sk-pnv-...`.",
            code="invalid_api_key",
        )
    if token != token.strip() or any(c.isspace() for c in token):
        raise AuthenticationError(
            "The API key contains whitespace or a line break; copy it again without spaces.", code="invalid_api_key"
        )
    if not token.startswith(KEY_PREFIX):
        raise AuthenticationError(
            f"The API key must start with `{KEY_PREFIX}`; check you are not sending another service's key.",
            code="invalid_api_key",
        )
    return token
