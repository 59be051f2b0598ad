"""Per-key requests-per-minute and tokens-per-minute limits: an exact sliding window.

A pure class with an injectable clock: each admitted request is remembered with its time and
token reservation for one window; a request is admitted only if, with it, the last window holds
at most `rpm` requests and `tpm` tokens. Exact under any concurrency (the event loop serialises
calls), and a reservation is corrected to the real usage when the request ends. A request counts
against `rpm` from the moment it is taken, whatever its outcome; only its tokens are given back when
it never ran.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass(eq=False)
class _Entry:
    at: float
    tokens: int
    # False once the entry has left its window (aged out or cancelled): settling it then changes
    # nothing. A flag, not a search of the window, which holds a minute of a busy key's requests.
    live: bool = True


@dataclass
class _Window:
    entries: deque[_Entry] = field(default_factory=deque)
    tokens: int = 0


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


class Reservation:
    """A request's entry in the window: reserve() holds its tokens, settle() corrects them at the end."""

    def __init__(self, limiter: RateLimiter, key: str, limits: Limits, entry: _Entry) -> None:
        self._limiter = limiter
        self._key = key
        self._limits = limits
        self._entry = entry
        self._open = True

    async def reserve(self, tokens: int) -> None:
        """Hold `tokens` for the request until it ends, or raise RateLimited (tokens) saying when they fit."""
        self._limiter._reserve(self._key, self._limits, self._entry, tokens)

    def settle(self, actual_tokens: int) -> None:
        """Replace the reserved tokens by what the request really used."""
        if self._open:
            self._open = False
            self._limiter._retoken(self._key, self._entry, max(0, actual_tokens))

    def cancel(self) -> None:
        """The request never ran (e.g. 503): its tokens are given back; it still counts as a request."""
        self.settle(0)


class RateLimiter:
    """Sliding-window limits per key id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self._clock = clock
        self._window_s = window_s
        self._windows: dict[str, _Window] = {}

    async def take(self, key: str, limits: Limits) -> Reservation:
        """Count one request of `key` now, or raise RateLimited (requests) saying when one more fits.

        A request counts from here, whatever its outcome: refused work still cost the server its work.
        """
        now = self._clock()
        window = self._prune(key, now)
        if len(window.entries) + 1 > limits.rpm:
            raise requests_limited(limits, window.entries[0].at + self._window_s - now)
        entry = _Entry(now, 0)
        window.entries.append(entry)
        return Reservation(self, key, limits, entry)

    async def snapshot(self, key: str, limits: Limits) -> Snapshot:
        """Remaining capacity and time to a full reset, for the headers."""
        now = self._clock()
        window = self._prune(key, now)
        gone = now - self._window_s
        newest = window.entries[-1].at if window.entries else gone
        newest_tokens = next((e.at for e in reversed(window.entries) if e.tokens > 0), gone)
        return Snapshot(
            limits=limits,
            remaining_requests=max(0, limits.rpm - len(window.entries)),
            remaining_tokens=max(0, limits.tpm - window.tokens),
            reset_requests_s=max(0.0, newest + self._window_s - now),
            reset_tokens_s=max(0.0, newest_tokens + self._window_s - now),
        )

    async def close(self) -> None:
        """Nothing to release: the windows live in this process."""

    def _reserve(self, key: str, limits: Limits, entry: _Entry, tokens: int) -> None:
        now = self._clock()
        window = self._prune(key, now)
        in_use = window.tokens - entry.tokens if entry.live else window.tokens
        if in_use + tokens > limits.tpm:
            raise tokens_limited(limits, tokens, in_use, self._token_wait(window, limits, tokens, now))
        self._retoken(key, entry, tokens)

    def _prune(self, key: str, now: float) -> _Window:
        window = self._windows.setdefault(key, _Window())
        while window.entries and window.entries[0].at <= now - self._window_s:
            gone = window.entries.popleft()
            gone.live = False
            window.tokens -= gone.tokens
        return window

    def _token_wait(self, window: _Window, limits: Limits, tokens: int, now: float) -> float:
        """Seconds until enough old reservations leave the window for `tokens` more."""
        if tokens > limits.tpm:
            return self._window_s  # can never fit; the message says so
        excess = window.tokens + tokens - limits.tpm
        for entry in window.entries:
            excess -= entry.tokens
            if excess <= 0:
                return entry.at + self._window_s - now
        return self._window_s

    def _retoken(self, key: str, entry: _Entry, tokens: int) -> None:
        if entry.live:
            self._windows[key].tokens += tokens - entry.tokens
            entry.tokens = tokens


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
