"""The workload: concurrent streaming completions over real HTTP, timed per stream."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass

import httpx
import numpy as np

from pinaivu_local.errors import BenchError

# Words the prompts are made of; a leading request number keeps every prompt distinct, so
# neither server can reuse the KV cells of an earlier prompt.
_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "a", "server", "answers")
MAX_PROMPT_WORDS = 400
STREAM_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Workload:
    """What every stream asks for."""

    model_id: str
    prompt_words: int
    max_tokens: int


@dataclass(frozen=True)
class StreamResult:
    """One streamed completion as the client saw it."""

    ttft_s: float  # request sent -> first chunk with text
    total_s: float
    tokens: int
    finish_reason: str | None


@dataclass(frozen=True)
class LevelResult:
    """Every round at one concurrency."""

    concurrency: int
    wall_s: float  # summed over rounds: first request sent -> last stream done
    streams: tuple[StreamResult, ...]
    background_cpu: float = 0.0  # share of the machine other processes used meanwhile

    @property
    def tokens(self) -> int:
        """Generated tokens over all streams."""
        return sum(s.tokens for s in self.streams)

    @property
    def tokens_per_s(self) -> float:
        """Aggregate generation throughput."""
        return self.tokens / self.wall_s if self.wall_s else 0.0

    def ttft(self, percentile: float) -> float:
        """A percentile of time to first token, in seconds."""
        return float(np.percentile([s.ttft_s for s in self.streams], percentile))

    def short_streams(self, max_tokens: int) -> int:
        """Streams that ended before max_tokens (end-of-generation where it is not ignored)."""
        return sum(s.tokens < max_tokens for s in self.streams)


class PromptSource:
    """Distinct prompts of a fixed token length: a running request number, then words."""

    def __init__(self) -> None:
        self._numbers = itertools.count()

    def next(self, n_words: int) -> str:
        """The next prompt; every one of the same `n_words` tokenizes to the same length."""
        words = itertools.islice(itertools.cycle(_WORDS), n_words)
        return f"{next(self._numbers) % 10000:04d} " + " ".join(words)


async def calibrate_prompt(
    client: httpx.AsyncClient, base_url: str, model_id: str, target_tokens: int, prompts: PromptSource
) -> tuple[int, int]:
    """(words, prompt tokens): the fewest words whose prompt reaches `target_tokens`; warms the server up."""
    n_words, n_tokens = 1, 0
    while n_words <= MAX_PROMPT_WORDS:
        body = {"model": model_id, "prompt": prompts.next(n_words), "max_tokens": 1, "temperature": 0}
        response = await client.post(f"{base_url}/v1/completions", json=body, timeout=STREAM_TIMEOUT_S)
        if response.status_code != 200:
            raise BenchError(f"{base_url}: calibration request failed ({response.status_code}): {response.text[:300]}")
        n_tokens = int(response.json()["usage"]["prompt_tokens"])
        if n_tokens >= target_tokens:
            return n_words, n_tokens
        n_words += max(1, (target_tokens - n_tokens) // 2)
    raise BenchError(f"{base_url}: no prompt of up to {MAX_PROMPT_WORDS} words reaches {target_tokens} tokens")


async def run_round(
    client: httpx.AsyncClient, base_url: str, workload: Workload, concurrency: int, prompts: PromptSource
) -> tuple[float, list[StreamResult]]:
    """(wall seconds, streams): `concurrency` streams started together, all read to their end."""
    requests = [prompts.next(workload.prompt_words) for _ in range(concurrency)]
    started = time.perf_counter()
    results = await asyncio.gather(*(stream_completion(client, base_url, workload, p) for p in requests))
    return time.perf_counter() - started, list(results)


async def stream_completion(client: httpx.AsyncClient, base_url: str, workload: Workload, prompt: str) -> StreamResult:
    """One streaming /v1/completions request, read to its end."""
    body = {
        "model": workload.model_id,
        "prompt": prompt,
        "max_tokens": workload.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},  # ours sends usage; llama_cpp.server ignores it
        "ignore_eos": True,  # ours honours it; llama_cpp.server ignores it (short streams are reported)
    }
    started = time.perf_counter()
    ttft: float | None = None
    text_chunks, usage_tokens, finish = 0, None, None
    async with client.stream("POST", f"{base_url}/v1/completions", json=body, timeout=STREAM_TIMEOUT_S) as response:
        if response.status_code != 200:
            raise BenchError(f"{base_url}: stream failed ({response.status_code}): {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators and keep-alive comments
            payload = line.removeprefix("data:").strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                raise BenchError(f"{base_url}: stream reported an error: {chunk['error']}")
            for choice in chunk.get("choices") or []:
                if choice.get("text"):
                    text_chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - started
                finish = choice.get("finish_reason") or finish
            if chunk.get("usage"):
                usage_tokens = int(chunk["usage"]["completion_tokens"])
    total = time.perf_counter() - started
    tokens = _tokens(usage_tokens, finish, text_chunks, workload.max_tokens)
    return StreamResult(ttft_s=total if ttft is None else ttft, total_s=total, tokens=tokens, finish_reason=finish)


def _tokens(usage_tokens: int | None, finish: str | None, text_chunks: int, max_tokens: int) -> int:
    """Generated tokens: the usage when sent, max_tokens when the stream hit it, else its text chunks."""
    if usage_tokens is not None:
        return usage_tokens
    if finish == "length":
        return max_tokens
    return text_chunks
