"""Workload pieces: prompts, token counts, percentiles, and how the client reports a failed request."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from pinaivu_local.bench.load import (
    REQUESTS_PER_ROUND,
    LevelResult,
    PromptSource,
    StreamResult,
    Workload,
    _tokens,
    client_session,
    duration,
    requests_per_stream,
    stream_completion,
)
from pinaivu_local.bench.servers import free_port
from pinaivu_local.errors import BenchError


def test_prompts_are_distinct_and_the_same_shape() -> None:
    prompts = PromptSource()
    a, b = prompts.next(5), prompts.next(5)
    assert a != b
    assert a.split()[1:] == b.split()[1:] and len(a.split()[0]) == len(b.split()[0]) == 4


def test_token_count_prefers_usage_then_length() -> None:
    assert _tokens(7, "stop", 3, 32) == 7
    assert _tokens(None, "length", 3, 32) == 32
    assert _tokens(None, "stop", 3, 32) == 3


def test_level_aggregates() -> None:
    streams = tuple(StreamResult(ttft_s=t, total_s=2.0, tokens=32, finish_reason="length") for t in (1.0, 2.0, 3.0))
    level = LevelResult(concurrency=3, wall_s=4.0, streams=streams)
    assert level.tokens == 96
    assert level.tokens_per_s == 24.0
    assert level.ttft(50) == 2.0
    assert 2.8 < level.ttft(95) <= 3.0
    assert level.short_streams(32) == 0 and level.short_streams(33) == 3


def test_a_round_sends_enough_requests_to_measure() -> None:
    assert requests_per_stream(1) == REQUESTS_PER_ROUND
    assert requests_per_stream(3) * 3 >= REQUESTS_PER_ROUND > (requests_per_stream(3) - 1) * 3
    assert requests_per_stream(REQUESTS_PER_ROUND) == 1 and requests_per_stream(32) == 1


def test_best_round_splits_rounds_of_several_requests_per_stream() -> None:
    """One stream, two rounds of 8 requests each: the rounds are told apart by count, not by concurrency."""
    fast = [StreamResult(ttft_s=0.1, total_s=0.5, tokens=10, finish_reason="length")] * 8
    slow = [StreamResult(ttft_s=0.4, total_s=1.0, tokens=10, finish_reason="length")] * 8
    level = LevelResult(concurrency=1, wall_s=6.0, streams=(*slow, *fast), round_walls=(4.0, 2.0))
    assert level.best_tokens_per_s() == 40.0  # 80 tokens in the 2 s round
    assert level.best_ttft(50) == 0.1
    assert level.tokens_per_s == 160 / 6.0


def test_a_server_that_is_gone_is_a_bench_error_naming_it() -> None:
    """A transport failure (nothing listens any more) ends the bench with a message, not a traceback."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def ask() -> None:
        async with client_session(1, {}) as client:
            await stream_completion(client, url + "/v1/completions", Workload("m", 4, 8), {"prompt": "x"})

    with pytest.raises(BenchError, match=f"127.0.0.1:{port}: the request failed"):
        asyncio.run(ask())


def test_a_refused_stream_is_a_bench_error_with_the_servers_answer() -> None:
    """A status other than 200 ends the bench with the status and the start of the body."""

    async def ask() -> None:
        async def refuse(_request: web.Request) -> web.Response:
            return web.json_response({"error": {"message": "no such model"}}, status=404)

        app = web.Application()
        app.router.add_post("/v1/completions", refuse)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with client_session(1, {}) as client:
                url = f"http://127.0.0.1:{port}/v1/completions"
                await stream_completion(client, url, Workload("m", 4, 8), {"prompt": "x"})
        finally:
            await runner.cleanup()

    with pytest.raises(BenchError, match=r"stream failed \(404\).*no such model"):
        asyncio.run(ask())


def test_times_to_first_token_keep_three_digits() -> None:
    """A GPU's or a small model's first token comes in milliseconds: seconds to two decimals said 0.00."""
    assert [duration(s) for s in (0.0041234, 0.0734, 0.73, 0.99996, 3.84, 124.163)] == [
        "4.12 ms",
        "73.4 ms",
        "730 ms",
        "1.00 s",
        "3.84 s",
        "124.16 s",
    ]
