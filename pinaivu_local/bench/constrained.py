"""What constrained decoding costs: `python -m pinaivu_local.bench.constrained [--tiny]`.

In one process and one run, on the bench model: rounds of 8 concurrent streams, unconstrained and
held to a JSON schema in turn (interleaved, so both meet the same machine), every stream running to
its token budget; prints tokens/s of each, their ratio, and the time the masks took per token.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pinaivu_local.bench.model import ensure_bench_model
from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.engine.grammars import json_constraint
from pinaivu_local.engine.model_pool import EngineOptions, ModelEngine, ModelPool
from pinaivu_local.engine.prepared import ChatPrompt, Constraint
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.settings import Settings

# Records of a few typed fields, more than any budget here fills: every stream runs to max_tokens.
SCHEMA = {
    "type": "object",
    "properties": {
        "records": {
            "type": "array",
            "minItems": 500,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 0},
                    "name": {"type": "string", "maxLength": 12},
                    "kind": {"enum": ["alpha", "beta", "gamma"]},
                    "ok": {"type": "boolean"},
                },
                "required": ["id", "name", "kind", "ok"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["records"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Round:
    """One round of concurrent streams."""

    constrained: bool
    tokens: int
    seconds: float


async def _stream(engine: ModelEngine, i: int, max_tokens: int, constraint: Constraint | None) -> int:
    source = ChatPrompt([{"role": "user", "content": f"List the records, batch {i}."}])
    # Greedy, past end-of-generation tokens (the schema never lets one through): every stream makes max_tokens.
    params = SamplingParams(temperature=0, ignore_eos=True)
    prepared = await asyncio.to_thread(engine.prepare, source, params, max_tokens, constraint=constraint)
    last = None
    async for delta in engine.start(prepared):
        last = delta
    assert last is not None and last.usage is not None
    return last.usage.completion_tokens


async def _round(engine: ModelEngine, streams: int, max_tokens: int, constraint: Constraint | None) -> Round:
    started = time.perf_counter()
    counts = await asyncio.gather(*[_stream(engine, i, max_tokens, constraint) for i in range(streams)])
    return Round(constraint is not None, sum(counts), time.perf_counter() - started)


def measure(model: Path, *, streams: int, max_tokens: int, rounds: int, threads: int) -> str:
    """Run the rounds and return the report's lines."""
    spec = ModelSpec(id="bench", source=None, file=model, n_ctx=4096, n_gpu_layers=-1, parallel=streams)
    pool = ModelPool(Catalog(file=model.with_suffix(".toml"), models=(spec,)), EngineOptions(threads, 64, False))
    pool.open()
    try:
        engine = pool.get("bench")
        constraint = json_constraint(SCHEMA, param="response_format")
        asyncio.run(_round(engine, streams, 8, constraint))  # warm-up: compiles the grammar once
        before = dataclasses.replace(engine.mask_stats)
        results = [
            asyncio.run(_round(engine, streams, max_tokens, c)) for _ in range(rounds) for c in (None, constraint)
        ]
        masks = engine.mask_stats.masks - before.masks
        mask_s = engine.mask_stats.seconds - before.seconds
    finally:
        pool.close()
    free = _rate([r for r in results if not r.constrained])
    held = _rate([r for r in results if r.constrained])
    return "\n".join(
        [
            f"model {model.name}, {streams} streams x {max_tokens} tokens, {rounds} rounds each, interleaved",
            f"unconstrained  {free:8.1f} tok/s",
            f"json_schema    {held:8.1f} tok/s   ratio {held / free:.2f}x",
            f"mask time      {mask_s / max(1, masks) * 1e6:8.1f} us per token ({masks} masks)",
        ]
    )


def _rate(rounds: list[Round]) -> float:
    return sum(r.tokens for r in rounds) / sum(r.seconds for r in rounds)


def main() -> None:
    """Parse the options, make the model if needed, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Settings().data_dir / "bench", help="as `pinaivu-local bench`")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model: checks the machinery")
    parser.add_argument("--model", type=Path, help="any GGUF instead of the bench model")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: every core)")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    model = args.model or ensure_bench_model(args.work_dir, tiny=args.tiny)
    threads = args.threads or len(os.sched_getaffinity(0))
    print(measure(model, streams=args.streams, max_tokens=args.max_tokens, rounds=args.rounds, threads=threads))


if __name__ == "__main__":
    main()
