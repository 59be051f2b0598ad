"""What one request costs the server besides decoding: streamed completions of one token, back to back.

Not a test (pytest does not collect it). Run from the repository root:

    python -m pinaivu_local.bench.request_overhead [--requests N] [--threads N] [--model FILE]

Starts `pinaivu-local serve` as the bench does (bench/servers.py, the tiny F16 bench model unless
--model), then sends N streamed completions with `max_tokens` 1 one after another over real HTTP, and
reports per request: the wall time as the client saw it, and the CPU time of each of the server's
threads (from /proc: the event loop's thread, the engine's, the request log's writer, llama.cpp's
workers). With one token to generate, what is left is the request's fixed path: HTTP, authentication,
validation, tokenizing, the hop to the engine, the record and its group commit, the receipt.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from pinaivu_local.bench.cpu import thread_seconds
from pinaivu_local.bench.load import PromptSource
from pinaivu_local.bench.model import ensure_bench_model
from pinaivu_local.bench.servers import ServerProcess, ServerSetup, start_ours

WARMUP = 20


async def measure(server: ServerProcess, setup: ServerSetup, n: int) -> None:
    """Send WARMUP then `n` one-token streamed completions; print what each cost."""
    prompts = PromptSource()
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {setup.api_key}"}) as client:

        async def one() -> None:
            body = {"model": setup.model_id, "prompt": prompts.next(37), "max_tokens": 1, "temperature": 0}
            body |= {"stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
            async with client.stream("POST", f"{server.base_url}/v1/completions", json=body) as response:
                response.raise_for_status()
                async for _ in response.aiter_lines():
                    pass

        for _ in range(WARMUP):
            await one()
        before, started = thread_seconds(server.process.pid), time.perf_counter()
        for _ in range(n):
            await one()
        wall_s, after = time.perf_counter() - started, thread_seconds(server.process.pid)
    spent = {name: (seconds - before.get(name, 0.0)) * 1000 / n for name, seconds in after.items()}
    print(f"per request, over {n}: wall {wall_s / n * 1000:.2f} ms; server CPU {sum(spent.values()):.2f} ms")
    main_tid = str(server.process.pid)
    for name, ms in sorted(spent.items(), key=lambda item: -item[1]):
        if ms >= 0.05:
            role = " (event loop)" if name.split()[0] == main_tid else ""
            print(f"  thread {name}{role}: {ms:.2f} ms CPU")


def main() -> None:
    """Start the server, measure, stop it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the bench's tiny F16 model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or ensure_bench_model(work, tiny=True)
        setup = ServerSetup(model, "bench", n_ctx=4096, parallel=8, threads=args.threads, weight_repack=False)
        server = start_ours(setup, work)
        try:
            asyncio.run(measure(server, setup, args.requests))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
