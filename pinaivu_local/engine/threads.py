"""How many threads a one-token decode gets: one where one is as fast as all of them.

llama.cpp runs a batch of one token (a single sequence generating) on `n_threads` and larger batches
on `n_threads_batch`. Where such a decode is short (a small model, a model offloaded to a GPU), more
threads only add their synchronization, and between decodes their idle workers spin on cores that the
HTTP layer and the clients need; where it is long (a 1B model on a CPU), they divide the work. So when
a model is loaded, the engine times a few one-token decodes with one thread and with all of them, and
keeps one thread for them when it is no slower. Batches of several tokens always get every thread.
"""

from __future__ import annotations

import logging
import statistics
import time

import llama_cpp.llama_cpp as llama

from pinaivu_local.engine.batch import TokenBatch

log = logging.getLogger(__name__)

# Timed one-token decodes per thread count (they alternate, after one untimed each): at least TRIALS,
# and for short decodes as many as fit in about TIMING_BUDGET_S per count, up to MAX_TRIALS.
TRIALS = 5
MAX_TRIALS = 50
TIMING_BUDGET_S = 0.02
NO_SLOWER = 1.05  # one thread is kept when its median time is at most this much of all threads'


def fewest_as_fast(one_thread_s: float, all_threads_s: float, n_threads: int) -> int:
    """Threads for one-token decodes, from their median times on one thread and on `n_threads`."""
    return 1 if n_threads > 1 and one_thread_s <= all_threads_s * NO_SLOWER else n_threads


def tune_generation_threads(ctx: llama.llama_context_p, batch: TokenBatch, n_threads: int, label: str) -> int:
    """Time one-token decodes on scratch sequence 0 (emptied after) and set the context's threads.

    Returns the threads one-token decodes now get. Call before the context serves anything.
    """
    if n_threads <= 1:
        return n_threads
    memory = llama.llama_get_memory(ctx)
    times: dict[int, list[float]] = {1: [], n_threads: []}
    trials, trial = TRIALS, 0
    try:
        while trial <= trials:
            for threads in (1, n_threads):
                llama.llama_set_n_threads(ctx, threads, n_threads)
                llama.llama_memory_seq_rm(memory, 0, -1, -1)  # every timed decode alike: token 0 at position 0
                batch.clear()
                batch.add([0], 0, 0, logits=True)
                started = time.perf_counter()
                if llama.llama_decode(ctx, batch.seal()) != 0:
                    log.warning("%s: could not time one-token decodes; they use %d threads", label, n_threads)
                    llama.llama_set_n_threads(ctx, n_threads, n_threads)
                    return n_threads
                elapsed = time.perf_counter() - started
                if trial:  # the first of each is a warm-up
                    times[threads].append(elapsed)
                else:
                    trials = max(trials, min(MAX_TRIALS, int(TIMING_BUDGET_S / max(elapsed, 1e-6))))
            trial += 1
    finally:
        llama.llama_memory_seq_rm(memory, 0, -1, -1)
    one, every = statistics.median(times[1]), statistics.median(times[n_threads])
    chosen = fewest_as_fast(one, every, n_threads)
    llama.llama_set_n_threads(ctx, chosen, n_threads)
    log.info(
        "%s: one-token decodes on %d thread(s) (median %.2f ms on 1, %.2f ms on %d); batches on %d",
        label,
        chosen,
        one * 1000,
        every * 1000,
        n_threads,
        n_threads,
    )
    return chosen
