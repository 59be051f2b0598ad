"""The batching scheduler on a real tiny model: batching, determinism, cancellation, limits."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import llama_cpp.llama_cpp as llama
import pytest

from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.engine.context import ContextConfig
from pinaivu_local.engine.generation import Delta
from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions
from pinaivu_local.engine.model_pool import EngineOptions, ModelEngine, ModelPool
from pinaivu_local.engine.prepared import ChatPrompt, TextPrompt
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import Scheduler
from pinaivu_local.engine.stream import GenerationStream
from pinaivu_local.errors import (
    EngineFailure,
    InternalError,
    Unavailable,
)
from tests.faults import fail_next_admission
from tests.helpers import TinyModels

NO_EOG = {321: -100.0, 324: -100.0, 325: -100.0}


async def generate(
    engine: ModelEngine, text: str, max_tokens: int, *, chat: bool = True, **params: object
) -> list[Delta]:
    source = ChatPrompt([{"role": "user", "content": text}]) if chat else TextPrompt(text)
    prepared = engine.prepare(source, SamplingParams(**params), max_tokens)  # type: ignore[arg-type]
    return [d async for d in engine.start(prepared)]


def start(engine: ModelEngine, text: str, max_tokens: int, **params: object) -> GenerationStream:
    """Queue a chat of one user message; the caller iterates or closes the stream."""
    source = ChatPrompt([{"role": "user", "content": text}])
    return engine.start(engine.prepare(source, SamplingParams(**params), max_tokens))  # type: ignore[arg-type]


def joined(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def test_usage_and_finish(pool: ModelPool) -> None:
    deltas = asyncio.run(generate(pool.get("tiny"), "hi", 7, temperature=0, logit_bias=NO_EOG))
    last = deltas[-1]
    assert last.finish_reason == "length"
    assert last.usage is not None and last.usage.completion_tokens == 7
    assert all(d.finish_reason is None for d in deltas[:-1])


def test_greedy_alone_equals_greedy_in_a_crowd(pool: ModelPool) -> None:
    engine = pool.get("tiny")

    async def crowd() -> list[list[Delta]]:
        jobs = [generate(engine, "x" * (i * 7 + 1), 5 + 4 * i, temperature=0, logit_bias=NO_EOG) for i in range(8)]
        return await asyncio.gather(*jobs)

    alone = [
        joined(asyncio.run(generate(engine, "x" * (i * 7 + 1), 5 + 4 * i, temperature=0, logit_bias=NO_EOG)))
        for i in range(8)
    ]
    together = asyncio.run(crowd())
    assert [joined(d) for d in together] == alone
    assert [d[-1].usage.completion_tokens for d in together] == [5 + 4 * i for i in range(8)]  # type: ignore[union-attr]


def test_plain_greedy_reads_the_argmax_and_equals_the_greedy_sampler(pool: ModelPool) -> None:
    """Plain greedy requests skip the sampler chain (engine/sampling.py argmax_tokens): in a crowd of them
    and of chain-sampled ones (a zero bias keeps the logits but takes the chain), every answer is the
    chain's answer alone."""
    engine = pool.get("tiny")
    zero_bias = {1: 0.0}  # changes no logit, but is not "plain": the llama.cpp greedy sampler picks

    def one(i: int, bias: dict[int, float]) -> Awaitable[list[Delta]]:
        return generate(engine, "y" * (i * 5 + 2), 9 + i, temperature=0, ignore_eos=True, logit_bias=bias)

    chain = [joined(asyncio.run(one(i, zero_bias))) for i in range(4)]

    async def crowd() -> list[list[Delta]]:  # the pool's 8 sequences: each prompt plain and chained at once
        return await asyncio.gather(*[one(i, {}) for i in range(4)], *[one(i, zero_bias) for i in range(4)])

    assert [joined(d) for d in asyncio.run(crowd())] == chain + chain
    assert [joined(asyncio.run(one(i, {}))) for i in range(4)] == chain  # and plain alone
    assert len(set(chain)) > 1


def test_only_requests_that_sample_build_a_sampler_chain(pool: ModelPool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain greedy request's tokens are argmaxes: it builds no llama.cpp chain (four foreign calls on the
    event loop, one on the engine thread); a biased or seeded one does."""
    import pinaivu_local.engine.scheduler as scheduler_module

    built: list[SamplingParams] = []
    real = scheduler_module.build_sampler

    def counting(params: SamplingParams, n_vocab: int, max_tokens: int) -> object:
        built.append(params)
        return real(params, n_vocab, max_tokens)

    monkeypatch.setattr(scheduler_module, "build_sampler", counting)
    engine = pool.get("tiny")
    plain = asyncio.run(generate(engine, "plain", 4, temperature=0, ignore_eos=True))
    assert built == [] and plain[-1].usage is not None and plain[-1].usage.completion_tokens == 4
    asyncio.run(generate(engine, "biased", 4, temperature=0, logit_bias=NO_EOG))
    asyncio.run(generate(engine, "seeded", 4, temperature=0.8, seed=7, ignore_eos=True))
    assert [(p.temperature, dict(p.logit_bias)) for p in built] == [(0, NO_EOG), (0.8, {})]


def test_preemption_when_the_cache_fills_keeps_outputs_exact(
    tiny_models: TinyModels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Four sequences that cannot all fit a 256-token cache: the youngest are pre-empted, their cells saved
    out of the cache, and resumed from those cells."""
    spec = ModelSpec(id="small", source=None, file=tiny_models.f16, n_ctx=256, n_gpu_layers=0, parallel=4)
    pools = [ModelPool(Catalog(file=tmp_path / "m.toml", models=(spec,)), EngineOptions(1, 8, False)) for _ in "ab"]
    for opened in pools:
        opened.open()
    try:
        crowded, lone = (opened.get("small") for opened in pools)  # lone's saved prompts never reach crowded
        texts = [f"prompt number {i} " * (i + 1) for i in range(4)]  # all four are admitted at once

        def one(engine: ModelEngine, text: str) -> Awaitable[list[Delta]]:
            return generate(engine, text, 120, chat=False, temperature=0, logit_bias=NO_EOG)

        alone = [joined(asyncio.run(one(lone, t))) for t in texts]  # type: ignore[arg-type]

        async def together() -> list[list[Delta]]:
            return await asyncio.gather(*[one(crowded, t) for t in texts])

        with caplog.at_level(logging.DEBUG, logger="pinaivu_local.engine.scheduler"):
            crowd = asyncio.run(together())
        assert [joined(d) for d in crowd] == alone
        assert all(d[-1].usage is not None and d[-1].usage.completion_tokens == 120 for d in crowd)
        preempted = [r.args[1] for r in caplog.records if r.msg.startswith("pre-empting")]  # type: ignore[index]
        reused = [r.args[1] for r in caplog.records if "reuses" in r.msg]  # type: ignore[index]
        assert preempted
        # each resumed with every token it had when pre-empted but the last, which was not decoded yet
        assert all(tokens - 1 in reused for tokens in preempted)
    finally:
        for opened in pools:
            opened.close()


def test_queue_full_then_cancel_frees_the_slot(pool: ModelPool) -> None:
    engine = pool.get("slow")  # parallel 1, queue 1

    async def scenario() -> None:
        long = start(engine, "go", 1900, logit_bias=NO_EOG)
        first = aiter(long)
        await anext(first)
        queued = start(engine, "go", 2, logit_bias=NO_EOG)
        with pytest.raises(Unavailable):
            start(engine, "go", 2)
        long.close()
        deltas = await asyncio.wait_for(_drain(queued), timeout=5)
        assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 2

    asyncio.run(scenario())
    assert engine.status().running == 0 and engine.status().queued == 0


async def _drain(stream: object) -> list[Delta]:
    return [d async for d in stream]  # type: ignore[attr-defined]


def test_a_failing_decode_fails_only_its_batch(pool: ModelPool, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama_decode failing (simulated: a fault inside llama.cpp) fails that step's requests; the engine goes on."""
    import pinaivu_local.engine.scheduler as scheduler_module

    real_decode = scheduler_module.llama.llama_decode
    failures = iter([-3])

    def decode_failing_once(ctx: object, batch: object) -> int:
        status = next(failures, None)
        return status if status is not None else int(real_decode(ctx, batch))

    monkeypatch.setattr(scheduler_module.llama, "llama_decode", decode_failing_once)
    engine = pool.get("tiny")
    with pytest.raises(EngineFailure, match="status -3"):
        asyncio.run(generate(engine, "doomed", 5, temperature=0))
    after = asyncio.run(generate(engine, "fine", 5, temperature=0, logit_bias=NO_EOG))
    assert after[-1].usage is not None and after[-1].usage.completion_tokens == 5
    assert engine.status().state == "ready"


def test_cancelled_while_queued_frees_the_queue_place(pool: ModelPool) -> None:
    engine = pool.get("slow")  # parallel 1, queue 1

    async def scenario() -> None:
        long = start(engine, "go", 1900, logit_bias=NO_EOG)
        reading = aiter(long)  # kept: an iterator dropped would close the stream and free its slot
        await anext(reading)
        waiting = start(engine, "go", 2)
        waiting.close()  # its client left before it got a slot
        assert engine.status().queued == 1  # still counted until the engine's next step drops it
        deadline = time.monotonic() + 10  # however slow the machine: a step is milliseconds
        while engine.status().queued and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert (engine.status().running, engine.status().queued) == (1, 0)  # dropped, and the long one goes on
        replacement = start(engine, "go", 2, logit_bias=NO_EOG)  # the place is free again
        long.close()
        deltas = await asyncio.wait_for(_drain(replacement), timeout=5)
        assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 2

    asyncio.run(scenario())


@pytest.fixture
def own_pool(tiny_models: TinyModels, tmp_path: Path) -> Iterator[ModelPool]:
    """A pool of one tiny model for a test that breaks its engine on purpose."""
    spec = ModelSpec(id="tiny", source=None, file=tiny_models.f16, n_ctx=512, n_gpu_layers=0, parallel=2)
    opened = ModelPool(Catalog(file=tmp_path / "m.toml", models=(spec,)), EngineOptions(1, 4, False))
    opened.open()
    yield opened
    opened.close()


def test_a_failing_engine_thread_answers_its_requests_and_recovers(
    own_pool: ModelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure outside the decode (here: admitting) resets the engine: 503 for what it held, then serving again."""
    engine = own_pool.get("tiny")
    fail_next_admission(engine, monkeypatch, RuntimeError("injected failure"))

    async def doomed() -> None:
        stream = start(engine, "doomed", 5, temperature=0)
        await asyncio.wait_for(_drain(stream), timeout=10)

    with pytest.raises(Unavailable, match="restarting"):
        asyncio.run(doomed())
    deadline = time.monotonic() + 10
    while engine.status().state != "ready" and time.monotonic() < deadline:
        time.sleep(0.02)
    status = engine.status()
    assert (status.state, status.failures, status.restarts) == ("ready", 1, 1)
    assert status.last_failure == "RuntimeError: injected failure"
    after = asyncio.run(generate(engine, "fine", 5, temperature=0, logit_bias=NO_EOG))
    assert after[-1].usage is not None and after[-1].usage.completion_tokens == 5


def test_recovering_engine_refuses_with_retry_after(own_pool: ModelPool, monkeypatch: pytest.MonkeyPatch) -> None:
    """While it pauses after a failure, new requests get 503 with Retry-After, not a hang."""
    import pinaivu_local.engine.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "RESTART_BACKOFF_S", (2.0, 2.0))
    engine = own_pool.get("tiny")
    fail_next_admission(engine, monkeypatch, RuntimeError("injected failure"))
    with pytest.raises(Unavailable):
        asyncio.run(generate(engine, "doomed", 5, temperature=0))
    assert engine.status().state == "recovering"
    assert "injected failure" in (engine.status().detail or "")
    with pytest.raises(Unavailable, match="restarting") as refused:
        asyncio.run(generate(engine, "too early", 5, temperature=0))
    assert refused.value.retry_after >= 1


def test_a_sampler_that_cannot_be_built_fails_alone(own_pool: ModelPool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own bug in building a sampler is a 500 for that request only; the engine thread never sees it."""
    import pinaivu_local.engine.sampling as sampling_module

    def broken(*args: object) -> object:
        raise TypeError("this function takes at least 5 arguments (4 given)")

    monkeypatch.setattr(sampling_module.llama, "llama_sampler_init_penalties", broken)
    engine = own_pool.get("tiny")
    with pytest.raises(InternalError):
        asyncio.run(generate(engine, "x", 5, temperature=0, presence_penalty=0.5))
    status = engine.status()
    assert (status.state, status.failures, status.running, status.queued) == ("ready", 0, 0, 0)
    after = asyncio.run(generate(engine, "fine", 5, temperature=0, logit_bias=NO_EOG))
    assert after[-1].usage is not None and after[-1].usage.completion_tokens == 5


def test_frequency_penalty_breaks_a_greedy_loop(pool: ModelPool) -> None:
    """The call that killed the engine thread, now through the real chain: a looping token gives way."""
    engine = pool.get("tiny")
    plain = joined(asyncio.run(generate(engine, "repeat", 24, chat=False, temperature=0, logit_bias=NO_EOG)))
    assert plain == "P" * 24  # the tiny model's greedy loop for this prompt
    out = asyncio.run(
        generate(engine, "repeat", 24, chat=False, temperature=0, logit_bias=NO_EOG, frequency_penalty=2.0)
    )
    assert out[-1].usage is not None and out[-1].usage.completion_tokens == 24
    assert joined(out).startswith("PPP") and joined(out).count("P") < 10
    assert engine.status().state == "ready"


@pytest.fixture
def paced_pool(tiny_models: TinyModels, tmp_path: Path) -> Iterator[ModelPool]:
    """A pool whose engine hands a request's text over at most once an hour: the first, then the end."""
    spec = ModelSpec(id="tiny", source=None, file=tiny_models.f16, n_ctx=1024, n_gpu_layers=0, parallel=8)
    options = EngineOptions(n_threads=1, max_queue=1, weight_repack=False, text_interval_s=3600.0)
    opened = ModelPool(Catalog(file=tmp_path / "m.toml", models=(spec,)), options)
    opened.open()
    yield opened
    opened.close()


STEP_S = 0.25  # what each engine step takes on the clock of a Lockstep
PACE = "eeePPPPPPPPPPPPPPPPPPPPP"  # the tiny model's greedy 24 tokens after "pace", a character a token


class Lockstep:
    """Paces an engine thread from the test: each of its steps takes STEP_S on `clock`, and after a step that
    handed text over it waits until the reader has taken it. The reader always keeps up, whatever the
    machine's speed or load, so each hand-over reaches it as a delta of its own."""

    def __init__(self) -> None:
        self.now = 0.0
        self._taken = threading.Semaphore(0)

    def clock(self) -> float:
        return self.now

    def pace(self, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
        deliver = scheduler._deliver

        def deliver_then_wait(out: list[tuple[object, object]]) -> None:  # the end of every step
            deliver(out)  # type: ignore[arg-type]
            self.now += STEP_S
            if out:
                self._taken.acquire(timeout=30)  # a reader that never comes: go on, and its test fails

        monkeypatch.setattr(scheduler, "_deliver", deliver_then_wait)

    def read(self, start: Callable[[], GenerationStream]) -> list[Delta]:
        """Every delta of the stream `start` opens (on the event loop), taken one by one."""

        async def read() -> list[Delta]:
            deltas = []
            async for delta in start():
                deltas.append(delta)
                self._taken.release()
            return deltas

        return asyncio.run(read())


def test_held_text_comes_with_the_end_and_loses_nothing(
    pool: ModelPool, paced_pool: ModelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within its interval a request's text is held, not dropped: the first text at once, the rest with the
    finish, and every character of what the same request gives token by token."""
    every_token = asyncio.run(generate(pool.get("tiny"), "pace", 24, chat=False, temperature=0, logit_bias=NO_EOG))
    engine = paced_pool.get("tiny")
    steps = Lockstep()  # a reader that falls behind would see the same two deltas from an engine holding nothing
    steps.pace(engine._scheduler, monkeypatch)
    prepared = engine.prepare(TextPrompt("pace"), SamplingParams(temperature=0, logit_bias=NO_EOG), 24)
    paced = steps.read(lambda: engine.start(prepared))
    assert joined(paced) == joined(every_token) == PACE
    assert [len(d.text) for d in paced] == [1, 23] and paced[0].finish_reason is None
    assert paced[1].finish_reason == "length" and paced[1].usage is not None and paced[1].usage.completion_tokens == 24


@pytest.fixture
def in_step(tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., list[Delta]]]:
    """Greedy completions of "pace" from a scheduler that hands text over at most once a second of a
    Lockstep's clock (every fourth step), read delta by delta: the function takes a request's interval."""
    llama.llama_backend_init()
    model = LlamaModel(tiny_models.f16, LoadOptions(n_gpu_layers=0))
    steps = Lockstep()
    config = ContextConfig(n_ctx=256, parallel=1, n_threads=1, max_queue=1, text_interval_s=4 * STEP_S)
    scheduler = Scheduler(model, config, "tiny", clock=steps.clock)
    steps.pace(scheduler, monkeypatch)
    prompt = model.tokenize("pace", add_bos=True)
    params = SamplingParams(temperature=0, logit_bias=NO_EOG)
    try:
        yield lambda interval_s=None: steps.read(
            lambda: scheduler.submit(prompt, params, 24, text_interval_s=interval_s)
        )
    finally:
        scheduler.close()
        model.close()


def test_the_interval_is_honoured_when_the_reader_keeps_up(in_step: Callable[..., list[Delta]]) -> None:
    """The first token's text at once, then the text of each interval's four steps, the last ones with the end."""
    deltas = in_step()
    assert joined(deltas) == PACE
    assert [len(d.text) for d in deltas] == [1, 4, 4, 4, 4, 4, 3]
    assert [d.finish_reason for d in deltas] == [None] * 6 + ["length"]


def test_a_request_may_ask_for_its_own_interval(in_step: Callable[..., list[Delta]]) -> None:
    """A request's interval wins over the engine's: 0 hands every token over as it comes, an hour holds all
    but the first until the end, None is the engine's second."""
    every_token, engines, held = in_step(0.0), in_step(None), in_step(3600.0)
    assert joined(every_token) == joined(engines) == joined(held) == PACE
    assert [len(d.text) for d in every_token] == [1] * 24
    assert [len(d.text) for d in engines] == [1, 4, 4, 4, 4, 4, 3]
    assert [len(d.text) for d in held] == [1, 23]


def test_held_text_reaches_the_reader_before_an_error(
    pool: ModelPool, paced_pool: ModelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generation that fails midway still hands over what it wrote before the error (a stream shows it)."""
    import pinaivu_local.engine.scheduler as scheduler_module

    reference = joined(asyncio.run(generate(pool.get("tiny"), "fail", 6, chat=False, temperature=0, logit_bias=NO_EOG)))
    real_decode = scheduler_module.llama.llama_decode
    calls = iter(range(100))

    def decode_failing_at_the_seventh(ctx: object, batch: object) -> int:
        # the prompt, then one token a step: the seventh decode comes after six sampled tokens
        return -3 if next(calls) == 6 else int(real_decode(ctx, batch))

    monkeypatch.setattr(scheduler_module.llama, "llama_decode", decode_failing_at_the_seventh)
    received: list[Delta] = []

    async def failing() -> None:
        prepared = paced_pool.get("tiny").prepare(
            TextPrompt("fail"), SamplingParams(temperature=0, logit_bias=NO_EOG), 24
        )
        async for delta in paced_pool.get("tiny").start(prepared):
            received.append(delta)

    with pytest.raises(EngineFailure):
        asyncio.run(failing())
    assert joined(received) == reference  # the first text, and what was held when the step failed
