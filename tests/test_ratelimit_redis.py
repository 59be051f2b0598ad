"""The Redis limiter on a real Redis server: the in-process limiter's answers, exact across gateways."""

from __future__ import annotations

import threading
import time

import pytest

from pinaivu_local.errors import RateLimited, StorageUnavailable
from pinaivu_local.ratelimit import Limits
from pinaivu_local.ratelimit_redis import RedisRateLimiter
from tests.conftest import free_port


def limiter(url: str, window_s: float = 60.0) -> RedisRateLimiter:
    return RedisRateLimiter(url, window_s=window_s)


def test_exactly_rpm_across_two_gateways_under_contention(redis_url: str) -> None:
    """Two limiters (two gateways) on one Redis, 16 threads racing: exactly rpm requests pass."""
    gateways = [limiter(redis_url), limiter(redis_url)]
    limits = Limits(rpm=25, tpm=1_000_000)
    passed: list[int] = []
    refused: list[RateLimited] = []

    def hammer(index: int) -> None:
        for _ in range(5):
            try:
                gateways[index % 2].admit("k", limits, 10)
                passed.append(index)
            except RateLimited as exc:
                refused.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(passed) == 25 and len(refused) == 80 - 25
    assert {exc.limit_type for exc in refused} == {"requests"}
    assert all(55_000 < exc.retry_after_ms <= 60_000 for exc in refused)
    snap = gateways[1].snapshot("k", limits)
    assert (snap.remaining_requests, snap.remaining_tokens) == (0, 1_000_000 - 250)
    assert 55 < snap.reset_requests_s <= 60


def test_tokens_limit_settle_and_cancel(redis_url: str) -> None:
    shared = limiter(redis_url)
    limits = Limits(rpm=100, tpm=1000)
    big = shared.admit("k", limits, 900)
    with pytest.raises(RateLimited) as caught:
        shared.admit("k", limits, 200)
    assert caught.value.limit_type == "tokens" and "900 in use" in caught.value.message
    assert 55_000 < caught.value.retry_after_ms <= 60_000
    big.settle(100)  # it used far less than it reserved
    small = shared.admit("k", limits, 850)
    small.cancel()  # never ran: costs nothing
    small.settle(500)  # no effect once cancelled
    assert shared.snapshot("k", limits).remaining_tokens == 900
    assert shared.snapshot("k", limits).remaining_requests == 99
    with pytest.raises(RateLimited) as too_big:
        shared.admit("k", limits, 1001)
    assert "can never fit" in too_big.value.message and not too_big.value.retryable


def test_check_requests_reserves_nothing_and_keys_are_independent(redis_url: str) -> None:
    shared = limiter(redis_url)
    shared.admit("a", Limits(1, 100), 1)
    shared.check_requests("b", Limits(1, 100))
    shared.check_requests("b", Limits(1, 100))
    shared.admit("b", Limits(1, 100), 1)
    with pytest.raises(RateLimited):
        shared.check_requests("a", Limits(1, 100))


def test_the_window_slides(redis_url: str) -> None:
    shared = limiter(redis_url, window_s=0.5)
    limits = Limits(rpm=2, tpm=100)
    shared.admit("k", limits, 60)
    shared.admit("k", limits, 40)
    with pytest.raises(RateLimited) as caught:
        shared.admit("k", limits, 1)
    assert caught.value.retry_after_ms <= 500
    time.sleep(0.55)
    shared.admit("k", limits, 100)  # both left the window, their tokens with them


def test_an_unreachable_redis_is_a_503_not_a_free_pass() -> None:
    gone = limiter(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StorageUnavailable, match="rate-limit store"):
        gone.admit("k", Limits(1, 1), 1)
