"""The rate limiter's sliding window in Redis, shared by every gateway that points at the same server.

The same exact window as ratelimit.RateLimiter, kept per key in a sorted set (one member per admitted
request, scored by its time) and a hash (each member's tokens, and their sum). Every decision is one
Lua script, so prune, check and reserve are atomic across gateways, and the time is Redis's own
(`TIME`), so gateways with drifting clocks still share one window.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis

from pinaivu_local.errors import StorageUnavailable
from pinaivu_local.ratelimit import Limits, Snapshot, requests_limited, tokens_limited

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

# ARGV: window_ms, rpm, tpm, tokens (-1: check the requests limit only), member id.
# Returns {"ok"} or {"requests", wait_ms} or {"tokens", wait_ms, in_use}; numbers as strings (Lua
# numbers would reach Python truncated to integers).
_ADMIT = (
    _PRUNE
    + """
local rpm, tpm, want = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if count + 1 > rpm then
  local first = redis.call('ZRANGE', entries, 0, 0, 'WITHSCORES')
  return {'requests', tostring(tonumber(first[2]) + window - now)}
end
if want < 0 then return {'ok'} end
if sum + want > tpm then
  local wait = window
  if want <= tpm then
    local excess = sum + want - tpm
    local all = redis.call('ZRANGE', entries, 0, -1, 'WITHSCORES')
    for i = 1, #all, 2 do
      excess = excess - tonumber(redis.call('HGET', tokens, all[i]) or '0')
      if excess <= 0 then wait = tonumber(all[i + 1]) + window - now break end
    end
  end
  return {'tokens', tostring(wait), tostring(sum)}
end
redis.call('ZADD', entries, now, ARGV[5])
redis.call('HSET', tokens, ARGV[5], want)
redis.call('HINCRBY', tokens, '_sum', want)
redis.call('PEXPIRE', entries, math.ceil(window) + 1000)
redis.call('PEXPIRE', tokens, math.ceil(window) + 1000)
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

# ARGV: member id, new tokens (-1: remove the member, a request that never ran).
_SETTLE = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return 0 end
local new = tonumber(ARGV[2])
if new < 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[2], '_sum', -tonumber(old))
else
  redis.call('HSET', KEYS[2], ARGV[1], new)
  redis.call('HINCRBY', KEYS[2], '_sum', new - tonumber(old))
end
return 1
"""


class RedisRateLimiter:
    """Sliding-window limits per key id, kept in Redis; the same answers as RateLimiter, across gateways.

    Calls block for one round trip (well under a millisecond on a LAN); an unreachable Redis is a 503
    `storage_unavailable`, never a request let through unlimited.
    """

    def __init__(self, url: str, *, window_s: float, prefix: str = "pinaivu:rl:") -> None:
        self._client: redis.Redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._window_ms = window_s * 1000
        self._prefix = prefix
        self._admit = self._client.register_script(_ADMIT)
        self._snapshot = self._client.register_script(_SNAPSHOT)
        self._settle = self._client.register_script(_SETTLE)

    def ping(self) -> None:
        """StorageUnavailable unless Redis answers (checked once at start)."""
        self._call(self._client.ping)

    def close(self) -> None:
        """Release the connections."""
        self._client.close()

    def check_requests(self, key: str, limits: Limits) -> None:
        """RateLimited if one more request would pass the requests limit; reserves nothing."""
        self._decide(key, limits, -1, "")

    def admit(self, key: str, limits: Limits, tokens: int) -> RedisReservation:
        """Count a request of `tokens` tokens, or raise RateLimited saying which limit and when."""
        member = uuid.uuid4().hex
        self._decide(key, limits, tokens, member)
        return RedisReservation(self, key, member)

    def snapshot(self, key: str, limits: Limits) -> Snapshot:
        """Remaining capacity and time to a full reset, for the headers."""
        count, used, newest, newest_tokens = (
            float(x) for x in self._call(self._snapshot, keys=self._keys(key), args=[self._window_ms])
        )
        return Snapshot(
            limits=limits,
            remaining_requests=max(0, limits.rpm - int(count)),
            remaining_tokens=max(0, limits.tpm - int(used)),
            reset_requests_s=self._reset_s(newest),
            reset_tokens_s=self._reset_s(newest_tokens),
        )

    def settle(self, key: str, member: str, tokens: int) -> None:
        """Set an admitted request's tokens (-1: remove it)."""
        self._call(self._settle, keys=self._keys(key), args=[member, tokens])

    def _decide(self, key: str, limits: Limits, tokens: int, member: str) -> None:
        args = [self._window_ms, limits.rpm, limits.tpm, tokens, member]
        answer = [_text(x) for x in self._call(self._admit, keys=self._keys(key), args=args)]
        if answer[0] == "requests":
            raise requests_limited(limits, float(answer[1]) / 1000)
        if answer[0] == "tokens":
            raise tokens_limited(limits, tokens, int(float(answer[2])), float(answer[1]) / 1000)

    def _reset_s(self, age_ms: float) -> float:
        return 0.0 if age_ms < 0 else max(0.0, (self._window_ms - age_ms) / 1000)

    def _keys(self, key: str) -> list[str]:
        # One hash tag per key id: both keys of a window live on the same node of a Redis cluster.
        return [f"{self._prefix}{{{key}}}:e", f"{self._prefix}{{{key}}}:t"]

    def _call(self, function: Any, **kwargs: Any) -> Any:
        try:
            return function(**kwargs)
        except redis.RedisError as exc:
            raise StorageUnavailable(
                "The rate-limit store is unavailable (Redis does not answer); retry later.",
                reason=f"redis: {exc.__class__.__name__}",
            ) from None


class RedisReservation:
    """An admitted request's entry in the Redis window; settle() corrects its tokens at the end."""

    def __init__(self, limiter: RedisRateLimiter, key: str, member: str) -> None:
        self._limiter = limiter
        self._key = key
        self._member = member
        self._open = True

    def settle(self, actual_tokens: int) -> None:
        """Replace the reserved tokens by what the request really used."""
        self._close(max(0, actual_tokens))

    def cancel(self) -> None:
        """The request never ran (e.g. 503): it consumes nothing."""
        self._close(-1)

    def _close(self, tokens: int) -> None:
        if self._open:
            self._open = False
            try:
                self._limiter.settle(self._key, self._member, tokens)
            except StorageUnavailable:
                # The request has ended either way; its reservation leaves the window when it expires.
                log.warning("could not settle a rate-limit reservation in Redis; it stands until it expires")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
