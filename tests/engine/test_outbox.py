"""A request's outbox and how a reader that fell behind catches up: runs of text joined, nothing else."""

from __future__ import annotations

import asyncio

from pinaivu_local.engine.generation import Delta, Usage, coalesce
from pinaivu_local.engine.outbox import Outbox, TextPacing
from pinaivu_local.engine.stream import coalesced


def test_take_returns_everything_put_in_order_and_waits_when_empty() -> None:
    async def scenario() -> tuple[list[object], list[object]]:
        box = Outbox()
        box.put(1)
        box.put(2)
        first = await box.take()
        asyncio.get_running_loop().call_later(0.01, box.put, 3)
        return first, await box.take()

    assert asyncio.run(scenario()) == ([1, 2], [3])


def test_runs_of_text_are_joined_and_the_rest_kept_in_place() -> None:
    end = Delta("!", finish_reason="stop", usage=Usage(3, 4))
    error = RuntimeError("boom")
    items: list[object] = [Delta("a"), Delta("b"), Delta("c"), end, error]
    assert coalesced(items) == [Delta("abc"), end, error]
    assert coalesced([Delta("a")]) == [Delta("a")]
    assert coalesced([]) == []


def test_only_text_only_deltas_are_joined() -> None:
    assert Delta("x").text_only and not Delta("x", finish_reason="length").text_only
    last = Delta("x", finish_reason="length", usage=Usage(1, 1))
    assert coalesce(last, [Delta("y")]) is last


class Clock:
    """Monotonic seconds that pass only when the test says."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_pacing_hands_the_first_text_over_at_once_then_at_most_every_interval() -> None:
    clock = Clock(1000.0)
    pacing = TextPacing(1.0, clock)
    assert pacing.push("a") == "a"
    handed = []
    for text in "bcdefg":
        clock.now += 0.25
        handed.append(pacing.push(text))
    # held while less than a second has passed since the last hand-over, then all of it, in order
    assert handed == ["", "", "", "bcde", "", ""]
    assert pacing.drain() == "fg" and pacing.drain() == ""  # the end takes what is held: nothing lost
    clock.now += 0.25
    assert pacing.push("h") == ""  # the interval runs from the last hand-over, not from the drain


def test_the_first_text_goes_at_once_on_a_clock_that_has_just_started() -> None:
    """A monotonic clock counts from boot: on a machine up for less than the interval the first text still goes."""
    clock = Clock(0.0)
    pacing = TextPacing(3600.0, clock)
    assert pacing.push("a") == "a"
    clock.now = 3599.5
    assert pacing.push("b") == ""


def test_no_interval_hands_every_text_over() -> None:
    pacing = TextPacing(0.0, Clock(7.0))  # even with no time passing between texts
    assert [pacing.push(text) for text in "abc"] == ["a", "b", "c"]
    assert pacing.drain() == ""
