"""Requests that arrive together share an idle engine's first step where steps are long, and only there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import llama_cpp.llama_cpp as llama
import pytest

import pinaivu_local.engine.gathering as gathering
import pinaivu_local.engine.scheduler as scheduler_module
from pinaivu_local.engine.context import ContextConfig
from pinaivu_local.engine.gathering import GATHER_MAX_S, GATHER_MIN_S, GATHER_SHARE, MIN_TOKENS, StepClock
from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import Scheduler
from pinaivu_local.engine.stream import GenerationStream
from tests.helpers import TinyModels

ARRIVAL_GAP_S = 0.005  # between submissions: what the event loop spends admitting each request, and more


def test_the_window_is_a_share_of_the_step_and_capped() -> None:
    clock = StepClock()
    assert clock.gather_window(40) == 0.0  # nothing measured yet: never wait
    clock.observe(MIN_TOKENS - 1, 1.0)
    assert clock.per_token_s is None  # one-token steps say nothing about prompt tokens
    clock.observe(40, 0.4)  # a 1B model on a CPU: 10 ms a prompt token
    assert clock.gather_window(40) == pytest.approx(GATHER_SHARE * 0.4)
    assert clock.gather_window(10_000) == GATHER_MAX_S
    fast = StepClock()
    fast.observe(40, 0.002)  # a GPU: 50 us a token
    assert fast.gather_window(40) == 0.0 < GATHER_MIN_S
    clock.observe(40, 0.04)
    assert 0.001 < clock.per_token_s < 0.01  # a running average: one step moves it part of the way


@pytest.fixture
def scheduler(tiny_models: TinyModels) -> Iterator[tuple[Scheduler, LlamaModel]]:
    llama.llama_backend_init()
    model = LlamaModel(tiny_models.f16, LoadOptions(n_gpu_layers=0))
    opened = Scheduler(model, ContextConfig(n_ctx=1024, parallel=4, n_threads=1, max_queue=4), "tiny")
    try:
        yield opened, model
    finally:
        opened.close()
        model.close()


async def _arrive_apart(scheduler: Scheduler, model: LlamaModel, n: int) -> list[GenerationStream]:
    """`n` requests submitted ARRIVAL_GAP_S apart, each read to its end."""
    streams = []
    for i in range(n):
        prompt = model.tokenize(f"request number {i} arrives", add_bos=True)
        streams.append(scheduler.submit(prompt, SamplingParams(temperature=0, ignore_eos=True), 3))
        await asyncio.sleep(ARRIVAL_GAP_S)
    for stream in streams:
        [_ async for _ in stream]
    return streams


def first_step_sizes(engine: Scheduler, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Filled as the engine runs: how many sequences each of its batches holds."""
    sizes: list[int] = []
    fill = engine._fill_batch

    def counted(budget: int) -> tuple[llama.llama_batch, list[tuple[object, int, int]]]:
        batch, plan = fill(budget)
        sizes.append(len(plan))
        return batch, plan  # type: ignore[return-value]

    monkeypatch.setattr(engine, "_fill_batch", counted)
    return sizes


def test_long_steps_gather_simultaneous_arrivals_into_one(
    scheduler: tuple[Scheduler, LlamaModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a prompt token costs a thousand seconds (as if), requests that keep arriving are prefilled in one
    step: the engine waits for each next one until its slots are full. With no cap on the wait, however late
    a busy event loop submits them."""
    engine, model = scheduler
    engine._clock.per_token_s = 1000.0
    monkeypatch.setattr(gathering, "GATHER_MAX_S", 3600.0)
    monkeypatch.setattr(scheduler_module, "GATHER_MAX_S", 3600.0)
    sizes = first_step_sizes(engine, monkeypatch)
    streams = asyncio.run(_arrive_apart(engine, model, 4))  # its four slots
    assert sizes[0] == 4  # prefilled together, in the first step
    assert streams[0].timings().queue_s >= 3 * ARRIVAL_GAP_S * 0.9  # the first waited for the others


def test_the_wait_for_arrivals_is_capped(scheduler: tuple[Scheduler, LlamaModel]) -> None:
    """Where a step would take minutes, a request alone waits GATHER_MAX_S for company, not a share of them."""
    engine, model = scheduler
    engine._clock.per_token_s = 1000.0  # a share of its prompt's step: over a minute
    streams = asyncio.run(_arrive_apart(engine, model, 1))
    assert GATHER_MAX_S * 0.9 <= streams[0].timings().queue_s < 10  # the cap, however slow the machine


def test_short_steps_start_at_once(scheduler: tuple[Scheduler, LlamaModel], monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a prompt token costs microseconds (a GPU, the tiny model), nobody waits for others to arrive."""
    engine, model = scheduler
    engine._clock.per_token_s = 1e-5
    timed_waits: list[float] = []
    wait = engine._lock.wait

    def recorded(timeout: float | None = None) -> bool:
        if timeout is not None:
            timed_waits.append(timeout)
        return wait(timeout)

    monkeypatch.setattr(engine._lock, "wait", recorded)
    asyncio.run(_arrive_apart(engine, model, 3))
    assert engine._clock.gather_window(30) == 0.0 and timed_waits == []  # only waits for work, never for company


def test_only_uncached_prompt_tokens_count(scheduler: tuple[Scheduler, LlamaModel]) -> None:
    """A prompt that a saved prompt holds costs one token's compute: the window is that token's share, not the
    whole prompt's (a repeated prompt of a 1B model on a CPU waited 18 ms for nobody)."""
    engine, model = scheduler
    prompt = model.tokenize("the same question asked again and again", add_bos=True)

    async def ask_twice() -> tuple[int, int]:
        with engine._lock:  # held from before the submission: the engine cannot admit it meanwhile
            first = engine.submit(prompt, SamplingParams(temperature=0, ignore_eos=True), 2)
            cold = engine._uncached(first._seq)
        [_ async for _ in first]  # its end is delivered after its cells were saved
        with engine._lock:
            second = engine.submit(prompt, SamplingParams(temperature=0, ignore_eos=True), 2)
            warm = engine._uncached(second._seq)
        [_ async for _ in second]
        return cold, warm

    cold, warm = asyncio.run(ask_twice())
    assert (cold, warm) == (len(prompt), 1)  # the last prompt token is always computed again: its logits
    clock = StepClock(per_token_s=0.02)
    assert clock.gather_window(warm) == 0.0 < clock.gather_window(cold)
