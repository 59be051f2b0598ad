"""One-token decodes get one thread where one is as fast; batches always get every thread."""

from __future__ import annotations

import asyncio
from pathlib import Path

import llama_cpp.llama_cpp as llama
import pytest

from pinaivu_local.engine.context import ContextConfig
from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import Scheduler
from pinaivu_local.engine.threads import NO_SLOWER, fewest_as_fast
from tests.helpers import TinyModels


def test_one_thread_only_where_it_is_no_slower() -> None:
    assert fewest_as_fast(0.30e-3, 0.31e-3, 2) == 1  # a tiny model: threads only add their sync
    assert fewest_as_fast(0.31e-3 * NO_SLOWER, 0.31e-3, 4) == 1
    assert fewest_as_fast(0.32e-3 * NO_SLOWER, 0.31e-3, 4) == 4
    assert fewest_as_fast(90e-3, 50e-3, 2) == 2  # a 1B model on a CPU: they divide the work
    assert fewest_as_fast(1.0, 2.0, 1) == 1


@pytest.mark.parametrize("n_threads", [1, 2])
def test_the_context_gets_the_choice_and_the_scratch_cells_are_gone(tiny_models: TinyModels, n_threads: int) -> None:
    """The chosen count is the context's for one-token decodes, batches keep all, and the timing leaves
    no cell behind: a greedy answer afterwards is the one a context that never timed anything gives."""
    llama.llama_backend_init()
    model = LlamaModel(tiny_models.f16, LoadOptions(n_gpu_layers=0))
    scheduler = Scheduler(model, ContextConfig(n_ctx=512, parallel=2, n_threads=n_threads, max_queue=1), "tiny")
    try:
        assert scheduler.generation_threads in {1, n_threads}
        assert llama.llama_n_threads(scheduler._ctx) == scheduler.generation_threads
        assert llama.llama_n_threads_batch(scheduler._ctx) == n_threads
        assert llama.llama_memory_seq_pos_max(scheduler._memory, 0) == -1
        answer = asyncio.run(_greedy(scheduler, model))
    finally:
        scheduler.close()
        model.close()
    assert answer == asyncio.run(_reference(tiny_models.f16))


async def _greedy(scheduler: Scheduler, model: LlamaModel) -> str:
    prompt = model.tokenize("the quick brown fox", add_bos=True)
    stream = scheduler.submit(prompt, SamplingParams(temperature=0, ignore_eos=True), 12)
    return "".join([delta.text async for delta in stream])


async def _reference(path: Path) -> str:
    """The same request on a one-thread context, which times nothing."""
    model = LlamaModel(path, LoadOptions(n_gpu_layers=0))
    scheduler = Scheduler(model, ContextConfig(n_ctx=512, parallel=2, n_threads=1, max_queue=1), "reference")
    try:
        return await _greedy(scheduler, model)
    finally:
        scheduler.close()
        model.close()
