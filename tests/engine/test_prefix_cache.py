"""Choosing cached prefixes, and reuse in the real scheduler giving the same text as no reuse."""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Iterator
from pathlib import Path

import llama_cpp.llama_cpp as llama
import pytest

from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.engine.generation import Delta
from pinaivu_local.engine.model_pool import EngineOptions, ModelPool
from pinaivu_local.engine.prefix_cache import (
    MIN_REUSE,
    MIN_WAIT,
    Reuse,
    SavedPrompt,
    SavedPrompts,
    common_prefix,
    waits_for_prefill,
)
from pinaivu_local.engine.prepared import ChatPrompt, TextPrompt
from pinaivu_local.engine.sampling import SamplingParams
from tests.faults import admission_paused
from tests.helpers import TinyModels

NO_EOG = {321: -100.0, 324: -100.0, 325: -100.0}
SYSTEM = "You are a helpful assistant who answers in one short sentence. " * 3


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def saved(tokens: list[int], scope: str = "k") -> SavedPrompt:
    return SavedPrompt(tokens, scope, (ctypes.c_uint8 * 1)())


def test_common_prefix_of_long_lists() -> None:
    """The halving search finds the first difference wherever it is."""
    base = list(range(1000))
    for cut in (0, 1, 499, 500, 998, 999):
        assert common_prefix(base, [*base[:cut], -1, *base[cut + 1 :]]) == cut
    assert common_prefix(base, base[:300]) == 300


def test_best_prefers_the_longest_then_a_running_sequence() -> None:
    store = SavedPrompts(capacity=1000)
    tokens = list(range(40))
    short, long = saved([*range(20), 77]), saved([*range(30), 99])
    store.add(short)
    store.add(long)
    assert store.best(tokens, "k", running=[]) == Reuse(30, saved=long)
    # a tie goes to the running sequence (its cells are shared, not copied); a longer one wins anyway
    assert store.best(tokens, "k", running=[(5, "k", [*range(30), 7, 7], 30)]) == Reuse(30, slot=5)
    assert store.best(tokens, "k", running=[(5, "k", list(range(35)), 35)]) == Reuse(35, slot=5)
    assert store.tokens() == 52


def test_prefixes_are_shared_only_within_a_scope() -> None:
    store = SavedPrompts(capacity=1000)
    alice = saved(list(range(40)), "alice")
    store.add(alice)
    assert store.best(list(range(40)), "bob", running=[(3, "alice", list(range(40)), 40)]) is None
    assert store.best(list(range(40)), "alice", running=[]) == Reuse(39, saved=alice)
    assert store.best(list(range(40)), "bob", running=[(3, "bob", list(range(40)), 20)]) == Reuse(20, slot=3)


def test_the_last_token_is_always_decoded_and_short_prefixes_are_ignored() -> None:
    store = SavedPrompts(capacity=1000)
    whole = saved(list(range(40)), "")
    store.add(whole)
    assert store.best(list(range(40)), "", running=[]) == Reuse(39, saved=whole)
    assert store.best([*range(MIN_REUSE - 1), 77], "", running=[]) is None


def test_saved_prompts_keep_within_capacity_dropping_the_least_recently_used() -> None:
    store = SavedPrompts(capacity=100)
    first, second = saved([1] * 40), saved([2] * 40)
    store.add(first)
    store.add(second)
    store.used(first)  # served a request since: the older one now is `second`
    third = saved([3] * 40)
    store.add(third)
    assert (len(store), store.tokens()) == (2, 80)
    assert store.best([2] * 40, "k", []) is None
    assert store.best([1] * 40, "k", []) == Reuse(39, saved=first)
    store.add(saved([4] * 101))  # larger than the whole store: not kept, nothing dropped for it
    assert (len(store), store.tokens()) == (2, 80)


def test_saved_prompts_keep_within_their_memory() -> None:
    """PINAIVU_PROMPT_CACHE_MIB: the copies' bytes are bounded as well as their tokens."""
    store = SavedPrompts(capacity=1000, max_bytes=100)
    sized = [SavedPrompt([i] * 10, "k", (ctypes.c_uint8 * 40)()) for i in range(3)]
    for prompt in sized:
        store.add(prompt)
    assert (len(store), store.tokens()) == (2, 20)  # 120 bytes would not fit: the oldest went
    assert store.best([0] * 10, "k", []) is None
    store.add(SavedPrompt([9] * 10, "k", (ctypes.c_uint8 * 101)()))  # larger than all the memory: not kept
    assert (len(store), store.tokens()) == (2, 20)
    assert SavedPrompts(1000, max_bytes=0).keeps_any is False and store.keeps_any


def test_a_conversation_turn_replaces_the_saved_turns_it_extends() -> None:
    store = SavedPrompts(capacity=1000)
    turn1, other = saved(list(range(30))), saved(list(range(30)), "other")
    store.add(turn1)
    store.add(other)
    turn2 = saved(list(range(60)))
    store.add(turn2)
    assert (len(store), store.tokens()) == (2, 90)  # turn 1 is gone; the other scope's copy stays
    assert store.best(list(range(25)), "k", []) == Reuse(24, saved=turn2)


def test_a_request_waits_for_a_prefill_of_its_prefix_only_within_its_scope() -> None:
    prompt = list(range(200))
    leader = ("k", [*range(150), 999], 10)  # prefilling, 10 of its tokens cached so far
    assert waits_for_prefill(prompt, "k", 0, [leader])
    assert not waits_for_prefill(prompt, "other", 0, [leader])
    # not when what is to gain is small: the leader's prefill is nearly done, or the cache holds most of it
    assert not waits_for_prefill(prompt, "k", 0, [("k", leader[1], 150)])
    assert not waits_for_prefill(prompt, "k", 150 - MIN_WAIT + 1, [leader])
    assert not waits_for_prefill(prompt, "k", 0, [("k", [*range(MIN_WAIT - 1), 999], 0)])


def make_pool(tiny_models: TinyModels, folder: Path, parallel: int = 2, n_ctx: int = 2048) -> ModelPool:
    spec = ModelSpec(id="tiny", source=None, file=tiny_models.f16, n_ctx=n_ctx, n_gpu_layers=0, parallel=parallel)
    pool = ModelPool(Catalog(file=folder / "m.toml", models=(spec,)), EngineOptions(1, 4, False))
    pool.open()
    return pool


@pytest.fixture
def pools(tiny_models: TinyModels, tmp_path: Path) -> Iterator[tuple[ModelPool, ModelPool]]:
    warm, fresh = make_pool(tiny_models, tmp_path), make_pool(tiny_models, tmp_path)
    yield warm, fresh
    warm.close()
    fresh.close()


async def answer(pool: ModelPool, user: str, max_tokens: int = 12, scope: str = "") -> str:
    engine = pool.get("tiny")
    source = ChatPrompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])
    params = SamplingParams(temperature=0, logit_bias=NO_EOG)
    stream = engine.start(engine.prepare(source, params, max_tokens, cache_scope=scope))
    return "".join([d.text async for d in stream])


def test_another_scope_never_reuses_the_prefix(
    pools: tuple[ModelPool, ModelPool], caplog: pytest.LogCaptureFixture
) -> None:
    """One key's cached system prompt does not speed up another key's first token."""
    warm, _ = pools
    with caplog.at_level(logging.DEBUG, logger="pinaivu_local.engine.scheduler"):
        asyncio.run(answer(warm, "first question", scope="alice"))
        asyncio.run(answer(warm, "second question", scope="bob"))
        assert "reuses" not in caplog.text
        asyncio.run(answer(warm, "third question", scope="alice"))
    assert "reuses" in caplog.text


def test_a_shared_system_prompt_is_reused_and_changes_nothing(
    pools: tuple[ModelPool, ModelPool], caplog: pytest.LogCaptureFixture
) -> None:
    warm, fresh = pools
    with caplog.at_level(logging.DEBUG, logger="pinaivu_local.engine.scheduler"):
        asyncio.run(answer(warm, "first question"))
        reused = asyncio.run(answer(warm, "second question"))
    assert "reuses" in caplog.text
    assert reused == asyncio.run(answer(fresh, "second question"))
    # the very same request again: everything but the last prompt token comes from the cache
    assert asyncio.run(answer(warm, "second question")) == reused


def test_a_finished_sequence_leaves_no_cells_in_the_cache(pools: tuple[ModelPool, ModelPool]) -> None:
    """Its cells are saved out (llama.cpp attends over every cell up to the last one in use) and come back."""
    warm, _ = pools
    scheduler = warm.get("tiny")._scheduler
    asyncio.run(answer(warm, "first question"))
    memory = llama.llama_get_memory(scheduler._ctx)
    assert [llama.llama_memory_seq_pos_max(memory, slot) for slot in range(2)] == [-1, -1]
    assert len(scheduler._saved) == 1

    async def second() -> int:
        engine = warm.get("tiny")
        source = ChatPrompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "second"}])
        stream = engine.start(engine.prepare(source, SamplingParams(temperature=0, logit_bias=NO_EOG), 4))
        deltas = [d async for d in stream]
        assert deltas[-1].usage is not None
        return deltas[-1].usage.cached_tokens

    assert asyncio.run(second()) > 40  # the system prompt's cells, restored into a free slot
    assert [llama.llama_memory_seq_pos_max(memory, slot) for slot in range(2)] == [-1, -1]


def test_no_prompt_memory_keeps_nothing(tiny_models: TinyModels, tmp_path: Path) -> None:
    """PINAIVU_PROMPT_CACHE_MIB=0: finished sequences are not copied out, so a repeated prompt is computed again."""
    spec = ModelSpec(id="tiny", source=None, file=tiny_models.f16, n_ctx=2048, n_gpu_layers=0, parallel=2)
    pool = ModelPool(
        Catalog(file=tmp_path / "m.toml", models=(spec,)), EngineOptions(1, 4, False, prompt_cache_bytes=0)
    )
    pool.open()
    try:

        async def cached_tokens() -> int:
            engine = pool.get("tiny")
            source = ChatPrompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "again"}])
            deltas = [d async for d in engine.start(engine.prepare(source, SamplingParams(temperature=0), 4))]
            assert deltas[-1].usage is not None
            return deltas[-1].usage.cached_tokens

        assert [asyncio.run(cached_tokens()) for _ in range(2)] == [0, 0]
        assert len(pool.get("tiny")._scheduler._saved) == 0
    finally:
        pool.close()


def test_a_saved_prompt_with_no_room_to_come_back_is_computed_instead(tiny_models: TinyModels, tmp_path: Path) -> None:
    """A restore puts the whole saved prompt back before cutting its tail: where the running sequences leave
    no room for all of it, the request computes its prompt, and its answer is the same."""
    pool, fresh = make_pool(tiny_models, tmp_path, n_ctx=256), make_pool(tiny_models, tmp_path, n_ctx=256)
    engine = pool.get("tiny")
    prompt = "the saved prompt " * 5  # saved with its 150-token answer: over 200 tokens
    params = SamplingParams(temperature=0, logit_bias=NO_EOG)

    async def complete(target: ModelPool, text: str, max_tokens: int) -> list[Delta]:
        stream = target.get("tiny").start(target.get("tiny").prepare(TextPrompt(text), params, max_tokens))
        return [d async for d in stream]

    async def beside_another() -> list[Delta]:
        with admission_paused(engine):  # admitted in one step: the other one's cells are counted first
            other = engine.start(engine.prepare(TextPrompt("another prompt " * 4), params, 20))
            ours = engine.start(engine.prepare(TextPrompt(prompt + "again"), params, 8))
        [_ async for _ in other]
        return [d async for d in ours]

    try:
        asyncio.run(complete(pool, prompt, 150))
        assert pool.get("tiny")._scheduler._saved.tokens() > 200
        crowded = asyncio.run(beside_another())
        assert crowded[-1].usage is not None and crowded[-1].usage.cached_tokens == 0
        alone = asyncio.run(complete(pool, prompt + "again", 8))  # with room, a saved prompt serves it
        assert alone[-1].usage is not None and alone[-1].usage.cached_tokens == alone[-1].usage.prompt_tokens - 1
        expected = "".join(d.text for d in asyncio.run(complete(fresh, prompt + "again", 8)))
        assert "".join(d.text for d in crowded) == "".join(d.text for d in alone) == expected
    finally:
        pool.close()
        fresh.close()


def test_shutting_down_saves_nothing(tiny_models: TinyModels, tmp_path: Path) -> None:
    """Closing ends the running sequences without copying their cells out: nobody would reuse them."""
    pool = make_pool(tiny_models, tmp_path)
    engine = pool.get("tiny")
    scheduler = engine._scheduler

    async def close_while_generating() -> None:
        params = SamplingParams(temperature=0, ignore_eos=True)
        stream = engine.start(engine.prepare(TextPrompt("a long answer " * 4), params, 1000))
        async for _ in stream:
            break  # it is running: its prompt's cells are in the cache
        pool.close()

    asyncio.run(close_while_generating())
    assert len(scheduler._saved) == 0


def test_a_prefix_held_by_a_running_sequence_is_shared(
    pools: tuple[ModelPool, ModelPool], caplog: pytest.LogCaptureFixture
) -> None:
    warm, fresh = pools

    async def together() -> tuple[str, str]:
        engine = warm.get("tiny")
        source = ChatPrompt(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "a long answer please"}]
        )
        long = aiter(engine.start(engine.prepare(source, SamplingParams(temperature=0, logit_bias=NO_EOG), 300)))
        first = await anext(long)  # the long one is generating, however fast or slow the machine
        short = await answer(warm, "a short one")
        return first.text + "".join([d.text async for d in long]), short

    with caplog.at_level(logging.DEBUG, logger="pinaivu_local.engine.scheduler"):
        long_text, short_text = asyncio.run(together())
    assert "reuses" in caplog.text
    assert short_text == asyncio.run(answer(fresh, "a short one"))
    assert long_text == asyncio.run(answer(fresh, "a long answer please", max_tokens=300))


def shared_system_chat(user: str) -> ChatPrompt:
    return ChatPrompt([{"role": "system", "content": SYSTEM * 2}, {"role": "user", "content": user}])


async def arriving_together(pool: ModelPool, scopes: list[str], cancel_first: bool = False) -> list[list[Delta]]:
    """One chat per scope, all queued before the engine admits any; each read to its end."""
    engine = pool.get("tiny")
    params = SamplingParams(temperature=0, logit_bias=NO_EOG)
    with admission_paused(engine):
        streams = [
            engine.start(engine.prepare(shared_system_chat(f"question {i}"), params, 6, cache_scope=scope))
            for i, scope in enumerate(scopes)
        ]
        if cancel_first:
            streams.pop(0).close()
    return [[d async for d in stream] for stream in streams]


def cached(deltas: list[Delta]) -> int:
    assert deltas[-1].usage is not None
    return deltas[-1].usage.cached_tokens


def test_requests_arriving_together_compute_a_shared_prefix_once(tiny_models: TinyModels, tmp_path: Path) -> None:
    """Eight chats with one system prompt admitted in one step: one prefills it, seven copy its cells."""
    crowd, alone = make_pool(tiny_models, tmp_path, parallel=8), make_pool(tiny_models, tmp_path, parallel=1)
    try:
        together = asyncio.run(arriving_together(crowd, ["k"] * 8))
        prompt_tokens = together[0][-1].usage.prompt_tokens  # type: ignore[union-attr]
        counts = sorted(cached(d) for d in together)
        assert counts[0] == 0  # the first computed the prefix
        assert len(set(counts[1:])) == 1 and MIN_WAIT <= counts[1] < prompt_tokens  # the rest copied all of it
        engine = alone.get("tiny")
        params = SamplingParams(temperature=0, logit_bias=NO_EOG)

        async def one(i: int) -> str:
            stream = engine.start(engine.prepare(shared_system_chat(f"question {i}"), params, 6))
            return "".join([d.text async for d in stream])

        assert ["".join(d.text for d in deltas) for deltas in together] == [asyncio.run(one(i)) for i in range(8)]
    finally:
        crowd.close()
        alone.close()


def test_requests_of_other_scopes_never_share_a_prefill(tiny_models: TinyModels, tmp_path: Path) -> None:
    pool = make_pool(tiny_models, tmp_path, parallel=8)
    try:
        assert [cached(d) for d in asyncio.run(arriving_together(pool, [f"key{i}" for i in range(8)]))] == [0] * 8
    finally:
        pool.close()


def test_a_cancelled_leader_strands_nobody(tiny_models: TinyModels, tmp_path: Path) -> None:
    pool = make_pool(tiny_models, tmp_path, parallel=8)
    try:
        together = asyncio.run(arriving_together(pool, ["k"] * 4, cancel_first=True))
        assert [d[-1].finish_reason for d in together] == ["length"] * 3
        assert sorted(cached(d) for d in together)[0] == 0
    finally:
        pool.close()
