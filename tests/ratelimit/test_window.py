"""The sliding-window limiter with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from pinaivu_local.errors import RateLimited
from pinaivu_local.ratelimit.limits import Limits, Snapshot, format_duration, retry_after_seconds
from pinaivu_local.ratelimit.window import RateLimiter, Reservation


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def admit(limiter: RateLimiter, key: str, limits: Limits, tokens: int) -> Reservation:
    """A request taken and its tokens reserved, as the inference flow does."""

    async def both() -> Reservation:
        reservation = await limiter.take(key, limits)
        await reservation.reserve(tokens)
        return reservation

    return asyncio.run(both())


def take(limiter: RateLimiter, key: str, limits: Limits) -> Reservation:
    return asyncio.run(limiter.take(key, limits))


def snapshot(limiter: RateLimiter, key: str, limits: Limits) -> Snapshot:
    return asyncio.run(limiter.snapshot(key, limits))


def test_exactly_rpm_requests_per_window(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(rpm=3, tpm=10_000)
    for _ in range(3):
        admit(limiter, "k", limits, 10)
        clock.now += 1
    with pytest.raises(RateLimited) as caught:
        admit(limiter, "k", limits, 10)
    assert caught.value.limit_type == "requests"
    assert caught.value.retry_after_ms == 57_000  # the first one leaves the window at 1060
    assert "3 per minute" in caught.value.message and "Retry in 57s" in caught.value.message
    clock.now = 1060.0
    admit(limiter, "k", limits, 10)  # one slot free again


def test_keys_are_independent(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    admit(limiter, "a", Limits(1, 100), 1)
    admit(limiter, "b", Limits(1, 100), 1)
    with pytest.raises(RateLimited):
        admit(limiter, "a", Limits(1, 100), 1)


def test_tokens_limit_and_when_they_free(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(rpm=100, tpm=1000)
    admit(limiter, "k", limits, 600)
    clock.now += 10
    admit(limiter, "k", limits, 300)
    with pytest.raises(RateLimited) as caught:
        admit(limiter, "k", limits, 200)
    assert caught.value.limit_type == "tokens"
    assert caught.value.retry_after_ms == 50_000  # the 600 leave at 1060, it is 1010 now
    admit(limiter, "k", limits, 100)  # still fits exactly


def test_settle_corrects_reservation_and_cancel_gives_the_tokens_back(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(rpm=2, tpm=1000)
    first = admit(limiter, "k", limits, 900)
    first.settle(120)  # the request used far less than reserved
    admit(limiter, "k", limits, 800)
    snap = snapshot(limiter, "k", limits)
    assert (snap.remaining_requests, snap.remaining_tokens) == (0, 80)
    second = RateLimiter(clock)
    reservation = admit(second, "k", Limits(2, 100), 50)
    reservation.cancel()  # never ran: its tokens are given back, but it was a request all the same
    reservation.settle(10)  # no effect once cancelled
    assert snapshot(second, "k", Limits(2, 100)).remaining_tokens == 100
    admit(second, "k", Limits(2, 100), 100)
    with pytest.raises(RateLimited) as caught:
        admit(second, "k", Limits(2, 100), 1)
    assert caught.value.limit_type == "requests"


def test_a_request_counts_from_the_moment_it_is_taken_whatever_its_outcome(clock: FakeClock) -> None:
    """Refused work is not free: a request refused for its tokens (or anything after take) still counts."""
    limiter = RateLimiter(clock)
    limits = Limits(rpm=2, tpm=100)
    refused = take(limiter, "k", limits)
    with pytest.raises(RateLimited) as caught:
        asyncio.run(refused.reserve(101))
    assert caught.value.limit_type == "tokens"
    take(limiter, "k", limits)  # e.g. a prompt that could not fit: never reserved anything
    with pytest.raises(RateLimited) as over:
        take(limiter, "k", limits)
    assert over.value.limit_type == "requests"
    snap = snapshot(limiter, "k", limits)
    assert (snap.remaining_requests, snap.remaining_tokens) == (0, 100)


def test_a_reservation_does_not_count_its_own_request_twice(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    reservation = take(limiter, "k", Limits(5, 100))
    asyncio.run(reservation.reserve(100))  # exactly the limit, beside nothing else
    assert snapshot(limiter, "k", Limits(5, 100)).remaining_tokens == 0


def test_request_larger_than_the_limit(clock: FakeClock) -> None:
    with pytest.raises(RateLimited) as caught:
        admit(RateLimiter(clock), "k", Limits(10, 100), 101)
    assert "Request too large" in caught.value.message and "101" in caught.value.message


def test_rejections_consume_nothing(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(rpm=1, tpm=100)
    admit(limiter, "k", limits, 100)
    for _ in range(5):
        with pytest.raises(RateLimited):
            admit(limiter, "k", limits, 1)
    clock.now += 60
    assert snapshot(limiter, "k", limits).remaining_requests == 1


def test_snapshot_resets(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    limits = Limits(rpm=10, tpm=100)
    assert snapshot(limiter, "k", limits).reset_requests_s == 0
    admit(limiter, "k", limits, 5)
    clock.now += 0.75
    snap = snapshot(limiter, "k", limits)
    assert snap.reset_requests_s == pytest.approx(59.25)
    assert (snap.remaining_requests, snap.remaining_tokens) == (9, 95)


def test_short_window(clock: FakeClock) -> None:
    limiter = RateLimiter(clock, window_s=2)
    admit(limiter, "k", Limits(1, 10), 1)
    with pytest.raises(RateLimited) as caught:
        admit(limiter, "k", Limits(1, 10), 1)
    assert caught.value.retry_after_ms == 2000


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (0.0, "0ms"), (1, "1s"), (17.5, "17.5s"), (360, "6m0s"), (61.4, "1m1s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("ms", "header"), [(1, 1), (999, 1), (1001, 2), (59_000, 59), (600_000, 60)])
def test_retry_after_seconds(ms: int, header: int) -> None:
    assert retry_after_seconds(ms) == header
