"""Workload pieces that need no server: prompts, token counts, percentiles."""

from __future__ import annotations

from pinaivu_local.bench.load import (
    REQUESTS_PER_ROUND,
    LevelResult,
    PromptSource,
    StreamResult,
    _tokens,
    requests_per_stream,
)


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
