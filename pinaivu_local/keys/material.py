"""Key material: generation, hashing, and the short prefix shown in listings."""

from __future__ import annotations

import hashlib
import secrets as _secrets

KEY_PREFIX = "sk-pnv-"
# 32 random bytes -> 43 url-safe characters after the prefix.
KEY_BYTES = 32
# Characters of the key shown in listings (the prefix plus a few random ones).
VISIBLE = len(KEY_PREFIX) + 6


def generate_key() -> str:
    """A new key: `sk-pnv-` + 43 random url-safe characters."""
    return KEY_PREFIX + _secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """SHA-256 of the key: enough for 256-bit random keys, and cheap per request."""
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    """What listings show of a key, e.g. `sk-pnv-Ab3dE9…`."""
    return key[:VISIBLE] + "…"


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return _secrets.compare_digest(a, b)
