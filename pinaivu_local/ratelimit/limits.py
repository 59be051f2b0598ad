"""Per-key limits as the server speaks of them: requests and tokens per minute, what a key has left,
the 429 a limit gives, and the two calls every limiter answers (window.py in this process,
redis_window.py across gateways)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from pinaivu_local.errors import RateLimited

WINDOW_S = 60.0  # "per minute"
# Retry-After is capped so the openai SDK (which honours up to 60 s) still retries by itself.
MAX_RETRY_AFTER_S = 60


@dataclass(frozen=True)
class Limits:
    """A key's limits per minute."""

    rpm: int
    tpm: int


@dataclass(frozen=True)
class Snapshot:
    """What the x-ratelimit-* headers say."""

    limits: Limits
    remaining_requests: int
    remaining_tokens: int
    reset_requests_s: float
    reset_tokens_s: float


class Admission(Protocol):
    """A request's place in its key's window: counted once taken, whatever becomes of the request."""

    async def reserve(self, tokens: int) -> None:
        """Hold `tokens` for the request until it ends, or raise RateLimited (tokens) saying when they fit."""

    def settle(self, actual_tokens: int) -> None:
        """Replace the reserved tokens by what the request really used."""

    def cancel(self) -> None:
        """The request never ran: its tokens are given back (the request itself still counts)."""


class Limiter(Protocol):
    """Per-key limits: this process's RateLimiter, or the Redis one several gateways share."""

    async def take(self, key: str, limits: Limits) -> Admission:
        """Count one request of `key` now, or raise RateLimited (requests) saying when one more fits."""

    async def snapshot(self, key: str, limits: Limits) -> Snapshot:
        """Remaining capacity and time to a full reset, for the headers."""

    async def close(self) -> None:
        """Release what it holds (connections); called once, when the server stops."""


def retry_after_seconds(retry_after_ms: int) -> int:
    """The Retry-After header: whole seconds, at least 1, at most 60."""
    return min(MAX_RETRY_AFTER_S, max(1, math.ceil(retry_after_ms / 1000)))


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: `250ms`, `1s`, `17.5s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


def requests_limited(limits: Limits, wait: float) -> RateLimited:
    """The 429 of a key at its requests limit, free again in `wait` seconds."""
    return RateLimited(
        f"Rate limit reached for requests: {limits.rpm} per minute for this key. Retry in {_human(wait)}.",
        limit_type="requests",
        retry_after_ms=_ms(wait),
    )


def tokens_limited(limits: Limits, tokens: int, in_use: int, wait: float) -> RateLimited:
    """The 429 of a request of `tokens` tokens that does not fit beside `in_use` for `wait` seconds."""
    return RateLimited(
        _tokens_message(limits, tokens, in_use, wait),
        limit_type="tokens",
        retry_after_ms=_ms(wait),
        retryable=tokens <= limits.tpm,  # more than the whole limit never fits: retrying is pointless
    )


def _tokens_message(limits: Limits, tokens: int, in_use: int, wait: float) -> str:
    if tokens > limits.tpm:
        return (
            f"Request too large for this key's token limit: it needs {tokens} tokens (prompt + max_tokens) "
            f"but the limit is {limits.tpm} per minute, so it can never fit; retrying will not help. "
            "Lower max_tokens or shorten the prompt."
        )
    return (
        f"Rate limit reached for tokens: {limits.tpm} per minute for this key, {in_use} in use, "
        f"this request needs {tokens} (prompt + max_tokens). Retry in {_human(wait)}."
    )


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _human(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"
