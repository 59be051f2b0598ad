"""What finished sequences' cells left in the KV cache cost later decodes, against saving them out.

Not a test (pytest does not collect it). Run from the repository root, on a GGUF such as the bench's
tiny model (`pinaivu-local bench` writes it under $PINAIVU_DATA_DIR/bench):

    python -m pinaivu_local.bench.idle_cells --model PATH [--requests N]

A context shaped as the engine shapes one (4,096 cells, 32 sequences, one unified cache, 2 threads)
serves requests one after another, each on the next of 28 slots: a 120-token prefill, then 15
one-token decodes. "kept": a finished request's cells stay in the cache, as this engine left them
until it saved them out. "saved out": they are copied to host memory (`engine/kv_state.py`) and
removed, as the engine does now. llama.cpp attends over (and builds a mask for) every cell up to the
highest one in use, so the kept cells make every later decode longer. Prints medians.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import llama_cpp.llama_cpp as llama

from pinaivu_local.engine.batch import TokenBatch
from pinaivu_local.engine.host.openmp import limit_spinning
from pinaivu_local.engine.kv_state import save_sequence

N_CTX, SEQUENCES, SLOTS_USED, PROMPT, GENERATED = 4096, 32, 28, 120, 15


def serve(ctx: llama.llama_context_p, n_vocab: int, requests: int, save_out: bool) -> dict[str, list[float]]:
    """Seconds of each prefill, one-token decode and save, over `requests` requests."""
    memory = llama.llama_get_memory(ctx)
    batch = TokenBatch(512)
    times: dict[str, list[float]] = {"prefill": [], "decode": [], "save": []}
    rng = random.Random(1)
    for i in range(requests):
        slot = i % SLOTS_USED
        llama.llama_memory_seq_rm(memory, slot, -1, -1)
        batch.clear()
        batch.add([rng.randrange(n_vocab) for _ in range(PROMPT)], 0, slot, logits=True)
        times["prefill"].append(timed(ctx, batch))
        for position in range(PROMPT, PROMPT + GENERATED):
            batch.clear()
            batch.add([rng.randrange(n_vocab)], position, slot, logits=True)
            times["decode"].append(timed(ctx, batch))
        if save_out:
            started = time.perf_counter()
            save_sequence(ctx, slot)
            llama.llama_memory_seq_rm(memory, slot, -1, -1)
            times["save"].append(time.perf_counter() - started)
        time.sleep(0.002)  # the gap between requests, where OpenMP's workers go idle
    return times


def timed(ctx: llama.llama_context_p, batch: TokenBatch) -> float:
    """Seconds of one llama_decode of `batch`."""
    sealed = batch.seal()
    started = time.perf_counter()
    if llama.llama_decode(ctx, sealed) != 0:
        raise SystemExit("llama_decode failed")
    return time.perf_counter() - started


def main() -> None:
    """Print the median prefill, one-token decode and save times, cells kept against saved out."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    limit_spinning()  # as `serve` does, before llama.cpp is loaded
    llama.llama_backend_init()
    model = llama.llama_model_load_from_file(args.model.encode(), llama.llama_model_default_params())
    if not model:
        raise SystemExit(f"{args.model}: llama.cpp could not load it")
    n_vocab = llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(model))
    for save_out in (False, True, False, True):
        params = llama.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = N_CTX, 512, 512, SEQUENCES
        params.n_threads = params.n_threads_batch = 2
        params.kv_unified = True
        ctx = llama.llama_init_from_model(model, params)
        try:
            times = serve(ctx, n_vocab, args.requests, save_out)
        finally:
            llama.llama_free(ctx)
        warm = args.requests // 10  # the first requests run on a nearly empty cache either way
        median = {name: statistics.median(values[warm:]) * 1e3 if values else 0.0 for name, values in times.items()}
        print(
            f"{'saved out' if save_out else 'kept':9s}: prefill of {PROMPT} tokens {median['prefill']:.2f} ms, "
            f"one-token decode {median['decode'] * 1e3:.0f} us, save {median['save'] * 1e3:.0f} us"
        )
    llama.llama_model_free(model)


if __name__ == "__main__":
    main()
