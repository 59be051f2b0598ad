"""Requests that arrive together share an idle engine's first step where steps are long, and only there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import llama_cpp.llama_cpp as llama
import pytest

from pinaivu_local.engine.gathering import GATHER_MAX_S, GATHER_MIN_S, GATHER_SHARE, MIN_TOKENS, StepClock
from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import ContextConfig, GenerationStream, Scheduler
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


def test_long_steps_gather_simultaneous_arrivals_into_one(scheduler: tuple[Scheduler, LlamaModel]) -> None:
    """Where a prompt token costs a second (as if), three requests 5 ms apart are prefilled in one step."""
    engine, model = scheduler
    engine._clock.per_token_s = 1.0
    streams = asyncio.run(_arrive_apart(engine, model, 3))
    first_tokens = [s._seq.first_token_at for s in streams]
    admitted = [s._seq.admitted_at for s in streams]
    assert None not in first_tokens and None not in admitted
    assert max(admitted) - min(admitted) < 0.001  # admitted together, in one step
    assert max(first_tokens) - min(first_tokens) < ARRIVAL_GAP_S / 2  # sampled in the same step
    assert streams[0].timings().queue_s >= 2 * ARRIVAL_GAP_S * 0.9  # the first waited for the others
    assert streams[0].timings().queue_s < GATHER_MAX_S + 0.05  # and no longer than the cap


def test_short_steps_start_at_once(scheduler: tuple[Scheduler, LlamaModel]) -> None:
    """The tiny model's steps take microseconds: nobody waits, the first answers before the second comes."""
    engine, model = scheduler
    streams = asyncio.run(_arrive_apart(engine, model, 3))
    assert engine._clock.gather_window(30) == 0.0
    first, second = streams[0]._seq, streams[1]._seq
    assert first.first_token_at is not None and first.first_token_at < second.submitted_at


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
