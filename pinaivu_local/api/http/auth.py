"""Who is calling: `Authorization: Bearer sk-pnv-...` (or, as Anthropic's SDK sends it, `x-api-key: sk-pnv-...`)
checked against the key store."""

from __future__ import annotations

from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.errors import AuthenticationError
from pinaivu_local.keys.material import KEY_PREFIX
from pinaivu_local.keys.records import ApiKey
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.ratelimit.limits import Limits


class KeyAuthenticator:
    """Turns an Authorization (or x-api-key) header into a Principal, or raises AuthenticationError."""

    def __init__(self, store: KeyStore, defaults: Limits) -> None:
        self._store = store
        self._defaults = defaults

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> Principal:
        """Look the key up; the store says whether it is unknown, revoked or expired."""
        record = self._store.authenticate(presented_key(authorization, api_key))
        return principal_of(record, self._defaults)

    async def authenticate_async(self, authorization: str | None, api_key: str | None = None) -> Principal:
        """authenticate() for the event loop: inline on a local SQLite file, whose lookup takes well under a
        millisecond, less than a hop to a worker thread and back, and never waits for a writer (WAL: a
        reader reads the last commit, whoever holds the write lock); on a worker thread where the key
        store is a database server (a network round trip), bounded: a server that does not answer in
        time is StorageUnavailable (503), not a request held for as long as it stalls."""
        if self._store.local:
            return self.authenticate(authorization, api_key)
        return await self._store.call(self.authenticate, authorization, api_key)


def principal_of(record: ApiKey, defaults: Limits) -> Principal:
    """A key record as the request sees it, server defaults filling absent limits."""
    return Principal(
        key_id=record.id,
        name=record.name,
        admin=record.admin,
        models=tuple(record.model_list()),
        limits=Limits(rpm=record.rpm or defaults.rpm, tpm=record.tpm or defaults.tpm),
    )


def presented_key(authorization: str | None, api_key: str | None) -> str:
    """The key a request presents: its Authorization header's, else its x-api-key header's (Anthropic's SDK).

    AuthenticationError naming what is wrong; where both are sent, Authorization is the one checked.
    """
    if authorization is None or not authorization.strip():
        if api_key is not None and api_key.strip():
            return _well_formed(api_key, "x-api-key")
        raise AuthenticationError(
            "You didn't provide an API key. Send it in the Authorization header: `Authorization: Bearer sk-pnv-...` "
            "(or as `x-api-key: sk-pnv-...`).",
            code="missing_api_key",
        )
    return bearer_token(authorization)


def bearer_token(authorization: str) -> str:
    """The key of a `Bearer sk-pnv-...` header; AuthenticationError naming what is wrong."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "The Authorization header must use the Bearer scheme: `Authorization: Bearer sk-pnv-...`.",
            code="invalid_api_key",
        )
    return _well_formed(token, "Authorization")


def _well_formed(token: str, header: str) -> str:
    """`token` if it can be one of our keys; AuthenticationError saying why not (`header` carried it)."""
    if token != token.strip() or any(c.isspace() for c in token):
        raise AuthenticationError(
            f"The API key in the {header} header contains whitespace or a line break; copy it again without spaces.",
            code="invalid_api_key",
        )
    if not token.startswith(KEY_PREFIX):
        raise AuthenticationError(
            f"The API key must start with `{KEY_PREFIX}`; check you are not sending another service's key.",
            code="invalid_api_key",
        )
    return token
