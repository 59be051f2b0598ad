"""A request's outbox and how a reader that fell behind catches up: runs of text joined, nothing else."""

from __future__ import annotations

import asyncio

from pinaivu_local.engine.outbox import Outbox
from pinaivu_local.engine.results import Delta, Usage, coalesce
from pinaivu_local.engine.scheduler import _coalesced


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
    assert _coalesced(items) == [Delta("abc"), end, error]
    assert _coalesced([Delta("a")]) == [Delta("a")]
    assert _coalesced([]) == []


def test_only_text_only_deltas_are_joined() -> None:
    assert Delta("x").text_only and not Delta("x", finish_reason="length").text_only
    last = Delta("x", finish_reason="length", usage=Usage(1, 1))
    assert coalesce(last, [Delta("y")]) is last
