"""Per-key requests-per-minute and tokens-per-minute limits in this process: an exact sliding window.

A pure class with an injectable clock: each admitted request is remembered with its time and
token reservation for one window; a request is admitted only if, with it, the last window holds
at most `rpm` requests and `tpm` tokens. Exact under any concurrency (the event loop serialises
calls), and a reservation is corrected to the real usage when the request ends. A request counts
against `rpm` from the moment it is taken, whatever its outcome; only its tokens are given back when
it never ran.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pinaivu_local.ratelimit.limits import WINDOW_S, Limits, Snapshot, requests_limited, tokens_limited


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
