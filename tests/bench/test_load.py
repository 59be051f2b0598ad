"""Workload pieces that need no server: prompts, token counts, percentiles."""

from __future__ import annotations

from pinaivu_local.bench.load import LevelResult, PromptSource, StreamResult, _tokens


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
