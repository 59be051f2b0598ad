"""The rate limiter's sliding window in Redis, shared by every gateway that points at the same server.

The same exact window as ratelimit.RateLimiter, kept per key in a sorted set (one member per admitted
request, scored by its time) and a hash (each member's tokens, and their sum). Every decision is one
Lua script, so prune, check and reserve are atomic across gateways, and the time is Redis's own
(`TIME`), so gateways with drifting clocks still share one window.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import redis
import redis.asyncio

from pinaivu_local.errors import StorageUnavailable
from pinaivu_local.ratelimit.limits import Limits, Snapshot, requests_limited, tokens_limited

log = logging.getLogger(__name__)

# Shared prologue: the time in ms, and the window pruned of entries at or before now - window.
_PRUNE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local window = tonumber(ARGV[1])
local entries, tokens = KEYS[1], KEYS[2]
local old = redis.call('ZRANGEBYSCORE', entries, '-inf', now - window)
for _, id in ipairs(old) do
  redis.call('HINCRBY', tokens, '_sum', -tonumber(redis.call('HGET', tokens, id) or '0'))
  redis.call('HDEL', tokens, id)
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', entries, '-inf', now - window) end
local count = redis.call('ZCARD', entries)
local sum = tonumber(redis.call('HGET', tokens, '_sum') or '0')
"""

# ARGV: window_ms, rpm, member id. Counts one request (with no tokens yet) unless the window is full.
# Returns {"ok"} or {"requests", wait_ms}; numbers as strings (Lua numbers would reach Python truncated
# to integers).
_TAKE = (
    _PRUNE
    + """
if count + 1 > tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', entries, 0, 0, 'WITHSCORES')
  return {'requests', tostring(tonumber(first[2]) + window - now)}
end
redis.call('ZADD', entries, now, ARGV[3])
redis.call('HSET', tokens, ARGV[3], 0)
redis.call('PEXPIRE', entries, math.ceil(window) + 1000)
redis.call('PEXPIRE', tokens, math.ceil(window) + 1000)
return {'ok'}
"""
)

# ARGV: window_ms, tpm, tokens, member id. Holds the tokens for a taken request unless they do not fit.
# Returns {"ok"} or {"tokens", wait_ms, in_use}.
_RESERVE = (
    _PRUNE
    + """
local tpm, want, member = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local own = redis.call('HGET', tokens, member)
local in_use = sum - tonumber(own or '0')
if in_use + want > tpm then
  local wait = window
  if want <= tpm then
    local excess = in_use + want - tpm
    local all = redis.call('ZRANGE', entries, 0, -1, 'WITHSCORES')
    for i = 1, #all, 2 do
      excess = excess - tonumber(redis.call('HGET', tokens, all[i]) or '0')
      if excess <= 0 then wait = tonumber(all[i + 1]) + window - now break end
    end
  end
  return {'tokens', tostring(wait), tostring(in_use)}
end
if own then
  redis.call('HSET', tokens, member, want)
  redis.call('HINCRBY', tokens, '_sum', want - tonumber(own))
end
return {'ok'}
"""
)

# ARGV: window_ms. Returns count, sum, ms since the newest entry, ms since the newest with tokens
# (-1 where there is none).
_SNAPSHOT = (
    _PRUNE
    + """
local newest, newest_tokens = -1, -1
local all = redis.call('ZREVRANGE', entries, 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  local age = now - tonumber(all[i + 1])
  if newest < 0 then newest = age end
  if tonumber(redis.call('HGET', tokens, all[i]) or '0') > 0 then newest_tokens = age break end
end
return {tostring(count), tostring(sum), tostring(newest), tostring(newest_tokens)}
"""
)

# ARGV: member id, new tokens. A member that has left the window stays gone.
_SETTLE = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return 0 end
local new = tonumber(ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], new)
redis.call('HINCRBY', KEYS[2], '_sum', new - tonumber(old))
return 1
"""


class RedisRateLimiter:
    """Sliding-window limits per key id, kept in Redis; the same answers as RateLimiter, across gateways.

    Every call is asynchronous and bounded by `timeout_s`: a Redis that stalls or cannot be reached is
    a 503 `storage_unavailable` within that time, never a frozen event loop nor a request let through
    unlimited.
    """

    def __init__(self, url: str, *, window_s: float, timeout_s: float = 2.0, prefix: str = "pinaivu:rl:") -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._client = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, socket_keepalive=True
        )
        self._window_ms = window_s * 1000
        self._prefix = prefix
        self._take = self._client.register_script(_TAKE)
        self._reserve = self._client.register_script(_RESERVE)
        self._snapshot = self._client.register_script(_SNAPSHOT)
        self._settle = self._client.register_script(_SETTLE)
        self._settling: set[asyncio.Task[None]] = set()  # held so they are not collected midway

    def ping(self) -> None:
        """StorageUnavailable unless Redis answers (checked once at start, before the event loop serves)."""
        client = redis.Redis.from_url(self._url, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        finally:
            client.close()

    async def close(self) -> None:
        """Let pending settlements finish (within the timeout), then release the connections."""
        await self.settled()
        await self._client.aclose()

    async def settled(self) -> None:
        """Wait (at most the timeout) until the settlements sent in the background have landed."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=self._timeout_s * 2)

    async def take(self, key: str, limits: Limits) -> RedisReservation:
        """Count one request of `key` now, or raise RateLimited (requests) saying when one more fits."""
        member = uuid.uuid4().hex
        answer = await self._call(self._take, keys=self._keys(key), args=[self._window_ms, limits.rpm, member])
        if answer[0] == "requests":
            raise requests_limited(limits, float(answer[1]) / 1000)
        return RedisReservation(self, key, limits, member)

    async def reserve(self, key: str, limits: Limits, member: str, tokens: int) -> None:
        """Hold `tokens` for a taken request, or raise RateLimited (tokens)."""
        args = [self._window_ms, limits.tpm, tokens, member]
        answer = await self._call(self._reserve, keys=self._keys(key), args=args)
        if answer[0] == "tokens":
            raise tokens_limited(limits, tokens, int(float(answer[2])), float(answer[1]) / 1000)

    async def snapshot(self, key: str, limits: Limits) -> Snapshot:
        """Remaining capacity and time to a full reset, for the headers."""
        count, used, newest, newest_tokens = (
            float(x) for x in await self._call(self._snapshot, keys=self._keys(key), args=[self._window_ms])
        )
        return Snapshot(
            limits=limits,
            remaining_requests=max(0, limits.rpm - int(count)),
            remaining_tokens=max(0, limits.tpm - int(used)),
            reset_requests_s=self._reset_s(newest),
            reset_tokens_s=self._reset_s(newest_tokens),
        )

    def settle_later(self, key: str, member: str, tokens: int) -> None:
        """Set a request's tokens in the background: a request's end never waits for Redis."""
        task = asyncio.get_running_loop().create_task(self._settle_now(key, member, tokens))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle_now(self, key: str, member: str, tokens: int) -> None:
        try:
            await self._call(self._settle, keys=self._keys(key), args=[member, tokens])
        except StorageUnavailable:
            # The request has ended either way; its reservation leaves the window when it expires.
            log.warning("could not settle a rate-limit reservation in Redis; it stands until it expires")

    def _reset_s(self, age_ms: float) -> float:
        return 0.0 if age_ms < 0 else max(0.0, (self._window_ms - age_ms) / 1000)

    def _keys(self, key: str) -> list[str]:
        # One hash tag per key id: both keys of a window live on the same node of a Redis cluster.
        return [f"{self._prefix}{{{key}}}:e", f"{self._prefix}{{{key}}}:t"]

    async def _call(self, script: Any, **kwargs: Any) -> list[str]:
        try:
            # The socket timeout bounds each read and write; this bounds the whole call (a connection
            # being made, a pool waiting) as well.
            answer = await asyncio.wait_for(script(**kwargs), self._timeout_s * 2)
        except (redis.RedisError, TimeoutError) as exc:
            raise _unavailable(exc) from None
        return [_text(x) for x in answer] if isinstance(answer, list) else [_text(answer)]


class RedisReservation:
    """A taken request's entry in the Redis window; settle() corrects its tokens at the end."""

    def __init__(self, limiter: RedisRateLimiter, key: str, limits: Limits, member: str) -> None:
        self._limiter = limiter
        self._key = key
        self._limits = limits
        self._member = member
        self._open = True

    async def reserve(self, tokens: int) -> None:
        """Hold `tokens` for the request until it ends, or raise RateLimited (tokens) saying when they fit."""
        await self._limiter.reserve(self._key, self._limits, self._member, tokens)

    def settle(self, actual_tokens: int) -> None:
        """Replace the reserved tokens by what the request really used (sent to Redis in the background)."""
        if self._open:
            self._open = False
            self._limiter.settle_later(self._key, self._member, max(0, actual_tokens))

    def cancel(self) -> None:
        """The request never ran (e.g. 503): its tokens are given back; it still counts as a request."""
        self.settle(0)


def _unavailable(exc: BaseException) -> StorageUnavailable:
    return StorageUnavailable(
        "The rate-limit store is unavailable (Redis does not answer); retry later.",
        reason=f"redis: {exc.__class__.__name__}",
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
