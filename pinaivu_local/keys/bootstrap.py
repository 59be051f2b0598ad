"""The first admin key: imported from PINAIVU_API_KEY, or created and shown once."""

from __future__ import annotations

from pinaivu_local.errors import ConfigError
from pinaivu_local.keys.material import KEY_PREFIX
from pinaivu_local.keys.store import IssuedKey, KeySettings, KeyStore

ENV_KEY_NAME = "PINAIVU_API_KEY"


def ensure_admin_key(store: KeyStore, env_key: str | None) -> IssuedKey | None:
    """Import `env_key` as an admin key once; on an empty store without it, create one.

    Returns a key created just now (to be printed once), else None. A revoked env key stays revoked.
    """
    if env_key is not None:
        if not env_key.startswith(KEY_PREFIX) or any(c.isspace() for c in env_key) or len(env_key) < 24:
            raise ConfigError(
                f"PINAIVU_API_KEY must look like {KEY_PREFIX}... (at least 24 characters, no spaces); "
                "unset it to have a key created for you"
            )
        if not store.has_key(env_key):
            store.create(KeySettings(name=ENV_KEY_NAME, admin=True), key=env_key)
        return None
    if store.is_empty():
        return store.create(KeySettings(name="admin", admin=True))
    return None
