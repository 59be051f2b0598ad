"""The Redis limiter on a real Redis server: the in-process limiter's answers, exact across gateways."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
import redis

from pinaivu_local.errors import RateLimited, StorageUnavailable
from pinaivu_local.ratelimit.limits import Limits
from pinaivu_local.ratelimit.redis_window import RedisRateLimiter, RedisReservation
from tests.helpers import free_port


def limiter(url: str, window_s: float = 60.0, timeout_s: float = 2.0) -> RedisRateLimiter:
    return RedisRateLimiter(url, window_s=window_s, timeout_s=timeout_s)


def run(test: Callable[..., Awaitable[None]], *limiters: RedisRateLimiter) -> None:
    """Run an async test body on one event loop (the clients' connections belong to it), then close them."""

    async def body() -> None:
        try:
            await test(*limiters)
        finally:
            for each in limiters:
                await each.close()

    asyncio.run(body())


async def admit(shared: RedisRateLimiter, key: str, limits: Limits, tokens: int) -> RedisReservation:
    """A request taken and its tokens reserved, as the inference flow does."""
    reservation = await shared.take(key, limits)
    await reservation.reserve(tokens)
    return reservation


def test_exactly_rpm_across_two_gateways_under_contention(redis_url: str) -> None:
    """Two limiters (two gateways) on one Redis, 16 concurrent clients: exactly rpm requests pass."""
    limits = Limits(rpm=25, tpm=1_000_000)
    passed: list[int] = []
    refused: list[RateLimited] = []

    async def hammer(gateway: RedisRateLimiter, index: int) -> None:
        for _ in range(5):
            try:
                await admit(gateway, "k", limits, 10)
                passed.append(index)
            except RateLimited as exc:
                refused.append(exc)

    async def test(first: RedisRateLimiter, second: RedisRateLimiter) -> None:
        await asyncio.gather(*(hammer((first, second)[i % 2], i) for i in range(16)))
        assert len(passed) == 25 and len(refused) == 80 - 25
        assert {exc.limit_type for exc in refused} == {"requests"}
        assert all(55_000 < exc.retry_after_ms <= 60_000 for exc in refused)
        snap = await second.snapshot("k", limits)
        assert (snap.remaining_requests, snap.remaining_tokens) == (0, 1_000_000 - 250)
        assert 55 < snap.reset_requests_s <= 60

    run(test, limiter(redis_url), limiter(redis_url))


def test_tokens_limit_settle_and_cancel(redis_url: str) -> None:
    limits = Limits(rpm=100, tpm=1000)

    async def test(shared: RedisRateLimiter) -> None:
        big = await admit(shared, "k", limits, 900)
        with pytest.raises(RateLimited) as caught:
            await admit(shared, "k", limits, 200)
        assert caught.value.limit_type == "tokens" and "900 in use" in caught.value.message
        assert 55_000 < caught.value.retry_after_ms <= 60_000
        big.settle(100)  # it used far less than it reserved
        await shared.settled()  # settlements go out in the background
        small = await admit(shared, "k", limits, 850)
        small.cancel()  # never ran: its tokens are given back
        small.settle(500)  # no effect once cancelled
        await shared.settled()
        assert (await shared.snapshot("k", limits)).remaining_tokens == 900
        # Four requests were taken (one refused for its tokens): each counts, whatever became of it.
        assert (await shared.snapshot("k", limits)).remaining_requests == 97
        with pytest.raises(RateLimited) as too_big:
            await admit(shared, "k", limits, 1001)
        assert "can never fit" in too_big.value.message and not too_big.value.retryable

    run(test, limiter(redis_url))


def test_a_taken_request_counts_whatever_its_outcome_and_keys_are_independent(redis_url: str) -> None:
    async def test(shared: RedisRateLimiter) -> None:
        await admit(shared, "a", Limits(1, 100), 1)
        await shared.take("b", Limits(2, 100))  # refused later (say its prompt cannot fit): still counted
        await admit(shared, "b", Limits(2, 100), 1)
        for key in ("a", "b"):
            with pytest.raises(RateLimited) as caught:
                await shared.take(key, Limits(2 if key == "b" else 1, 100))
            assert caught.value.limit_type == "requests"

    run(test, limiter(redis_url))


def test_the_window_slides(redis_url: str) -> None:
    limits = Limits(rpm=2, tpm=100)

    async def test(shared: RedisRateLimiter) -> None:
        await admit(shared, "k", limits, 60)
        await admit(shared, "k", limits, 40)
        with pytest.raises(RateLimited) as caught:
            await admit(shared, "k", limits, 1)
        assert caught.value.retry_after_ms <= 500
        await asyncio.sleep(0.55)
        await admit(shared, "k", limits, 100)  # both left the window, their tokens with them

    run(test, limiter(redis_url, window_s=0.5))


def test_an_unreachable_redis_is_a_503_not_a_free_pass() -> None:
    gone = limiter(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StorageUnavailable, match="rate-limit store"):
        gone.ping()

    async def test(shared: RedisRateLimiter) -> None:
        with pytest.raises(StorageUnavailable, match="rate-limit store"):
            await shared.take("k", Limits(1, 1))

    run(test, gone)


def test_a_stalled_redis_is_a_503_within_the_timeout_and_never_blocks_the_event_loop(redis_url: str) -> None:
    """Redis frozen for 4 s (DEBUG SLEEP): the limiter answers 503 after its 0.5 s timeout, and the event
    loop keeps ticking all the while (the synchronous client it replaced froze it for the whole stall)."""
    stall_s = 4.0
    sleeper = threading.Thread(
        target=lambda: redis.Redis.from_url(redis_url, socket_timeout=60).execute_command("DEBUG", "SLEEP", stall_s)
    )

    async def test(shared: RedisRateLimiter) -> None:
        await shared.take("warm", Limits(10, 10))  # connected before the stall
        sleeper.start()
        await asyncio.sleep(0.2)  # the sleep has begun
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.get_running_loop().create_task(tick())
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await shared.take("k", Limits(10, 10))
        waited = time.monotonic() - started
        ticker.cancel()
        assert waited < stall_s - 1  # bounded by the timeout, not by the stall
        assert ticks >= 3  # the loop ran while the call waited

    try:
        run(test, limiter(redis_url, timeout_s=0.5))
    finally:
        sleeper.join()
