"""The workload: concurrent streaming completions over real HTTP, timed per stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import numpy as np

from pinaivu_local.errors import BenchError

# Words the prompts are made of; a leading request number keeps every prompt distinct, so
# neither server can reuse the KV cells of an earlier prompt.
_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "a", "server", "answers")
MAX_PROMPT_WORDS = 4000
# A round sends at least this many requests: at low concurrency each stream sends several back to
# back, since one request of a few dozen milliseconds is too noisy a measure on its own.
REQUESTS_PER_ROUND = 8
STREAM_TIMEOUT_S = 600.0


def client_session(concurrency: int, headers: dict[str, str]) -> aiohttp.ClientSession:
    """The bench's HTTP client: aiohttp, whose C parser costs about a third of httpx's CPU per streamed
    chunk (107 against 320 us here), which on a small machine shares the cores with the servers: with
    httpx the client capped both servers near 3,000 tokens/s at 32 streams of the tiny model.

    A new connection for every request: while the other servers take their turn, a server closes the
    connections it kept alive (uvicorn after 5 s), and aiohttp does not retry a request on one of them.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency + 4, force_close=True),
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None, connect=STREAM_TIMEOUT_S, sock_read=STREAM_TIMEOUT_S),
    )


@dataclass(frozen=True)
class Workload:
    """What every stream asks for."""

    model_id: str
    prompt_words: int
    max_tokens: int
    # > 0: chats, the round's streams sharing a system prompt of this many words; 0: text completions
    shared_prefix_words: int = 0


def duration(seconds: float) -> str:
    """A time to first token for the tables: three significant digits, in ms below a second (a GPU's or a
    small model's first token comes in a few ms, which seconds to two decimals would show as 0.00)."""
    ms = float(f"{1000 * seconds:.3g}")
    return f"{ms:g} ms" if ms < 1000 else f"{seconds:.2f} s"


@dataclass(frozen=True)
class StreamResult:
    """One streamed completion as the client saw it."""

    ttft_s: float  # request sent -> first chunk with text
    total_s: float
    tokens: int
    finish_reason: str | None
    prompt_tokens: int | None = None  # as the server's usage reported it


@dataclass(frozen=True)
class LevelResult:
    """Every round at one concurrency."""

    concurrency: int
    wall_s: float  # summed over rounds: first request sent -> last stream done
    streams: tuple[StreamResult, ...]
    background_cpu: float = 0.0  # share of the machine other processes used meanwhile
    round_walls: tuple[float, ...] = ()  # each round's wall time; its streams are `streams` in order
    server_cpu_s: float = 0.0  # CPU seconds the server process used over the rounds

    @property
    def cpu_ms_per_token(self) -> float:
        """The server's CPU time per generated token: its cost, much less sensitive to other load than tok/s."""
        return 1000 * self.server_cpu_s / self.tokens if self.tokens else 0.0

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

    def _rounds(self) -> list[tuple[float, tuple[StreamResult, ...]]]:
        if not self.round_walls:
            return []
        size = len(self.streams) // len(self.round_walls)  # every round sends the same number of requests
        return [(wall, self.streams[i * size : (i + 1) * size]) for i, wall in enumerate(self.round_walls)]

    def best_tokens_per_s(self) -> float:
        """Throughput of the best round (all rounds together where rounds were not kept apart)."""
        rounds = [sum(s.tokens for s in streams) / wall for wall, streams in self._rounds() if wall]
        return max(rounds, default=self.tokens_per_s)

    def best_ttft(self, percentile: float) -> float:
        """The lowest per-round percentile of time to first token."""
        rounds = [float(np.percentile([s.ttft_s for s in streams], percentile)) for _, streams in self._rounds()]
        return min(rounds, default=self.ttft(percentile))

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
    client: aiohttp.ClientSession, base_url: str, model_id: str, target_tokens: int, prompts: PromptSource
) -> tuple[int, int]:
    """(words, prompt tokens): the fewest words whose prompt reaches `target_tokens`; warms the server up."""
    n_words, n_tokens = 1, 0
    while n_words <= MAX_PROMPT_WORDS:
        body = {"model": model_id, "prompt": prompts.next(n_words), "max_tokens": 1, "temperature": 0}
        async with _answered(base_url), client.post(f"{base_url}/v1/completions", json=body) as response:
            if response.status != 200:
                raise BenchError(
                    f"{base_url}: calibration request failed ({response.status}): {(await response.text())[:300]}"
                )
            n_tokens = int((await response.json())["usage"]["prompt_tokens"])
        if n_tokens >= target_tokens:
            return n_words, n_tokens
        n_words += max(1, (target_tokens - n_tokens) // 2)
    raise BenchError(f"{base_url}: no prompt of up to {MAX_PROMPT_WORDS} words reaches {target_tokens} tokens")


def requests_per_stream(concurrency: int) -> int:
    """How many requests each stream sends, one after another, in a round: at least REQUESTS_PER_ROUND in all."""
    return max(1, -(-REQUESTS_PER_ROUND // concurrency))


async def run_round(
    client: aiohttp.ClientSession, base_url: str, workload: Workload, concurrency: int, prompts: PromptSource
) -> tuple[float, list[StreamResult]]:
    """(wall seconds, requests): `concurrency` streams started together, each sending requests_per_stream()
    requests back to back, all read to their end."""
    shared = prompts.next(workload.shared_prefix_words) if workload.shared_prefix_words else None
    path = "/v1/chat/completions" if shared is not None else "/v1/completions"
    per_stream = requests_per_stream(concurrency)
    bodies = [
        [_body(workload, prompts.next(workload.prompt_words), shared) for _ in range(per_stream)]
        for _ in range(concurrency)
    ]

    async def stream(queue: list[dict[str, object]]) -> list[StreamResult]:
        return [await stream_completion(client, base_url + path, workload, body) for body in queue]

    started = time.perf_counter()
    results = await asyncio.gather(*(stream(queue) for queue in bodies))
    return time.perf_counter() - started, [r for per in results for r in per]


def _body(workload: Workload, prompt: str, system: str | None) -> dict[str, object]:
    """A streamed request: a text completion of `prompt`, or a chat with `system` and `prompt` as the user's."""
    body: dict[str, object] = {
        "model": workload.model_id,
        "max_tokens": workload.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},  # ours and llama-server send usage; llama_cpp.server ignores it
        "ignore_eos": True,  # ours and llama-server honour it; llama_cpp.server ignores it (short streams are reported)
    }
    if system is None:
        return {**body, "prompt": prompt}
    return {**body, "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}


async def stream_completion(
    client: aiohttp.ClientSession, url: str, workload: Workload, body: dict[str, object]
) -> StreamResult:
    """One streaming completion or chat request, read to its end."""
    base_url = url.split("/v1/", 1)[0]
    started = time.perf_counter()
    ttft: float | None = None
    text_chunks, usage_tokens, finish, prompt_tokens = 0, None, None, None
    async with _answered(base_url), client.post(url, json=body) as response:
        if response.status != 200:
            raise BenchError(f"{base_url}: stream failed ({response.status}): {(await response.read())[:300]!r}")
        async for raw in response.content:  # line by line
            line = raw.decode()
            if not line.startswith("data:"):
                continue  # blank separators and keep-alive comments
            payload = line.removeprefix("data:").strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                raise BenchError(f"{base_url}: stream reported an error: {chunk['error']}")
            for choice in chunk.get("choices") or []:
                if choice.get("text") or (choice.get("delta") or {}).get("content"):
                    text_chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - started
                finish = choice.get("finish_reason") or finish
            if chunk.get("usage"):
                usage_tokens = int(chunk["usage"]["completion_tokens"])
                prompt_tokens = int(chunk["usage"]["prompt_tokens"])
    total = time.perf_counter() - started
    tokens = _tokens(usage_tokens, finish, text_chunks, workload.max_tokens)
    return StreamResult(
        ttft_s=total if ttft is None else ttft,
        total_s=total,
        tokens=tokens,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
    )


@contextlib.asynccontextmanager
async def _answered(base_url: str) -> AsyncIterator[None]:
    """A request that fails in transport (the server went away, a timeout) as a BenchError naming the server."""
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise BenchError(f"{base_url}: the request failed ({exc.__class__.__name__}: {exc})") from None


def _tokens(usage_tokens: int | None, finish: str | None, text_chunks: int, max_tokens: int) -> int:
    """Generated tokens: the usage when sent, max_tokens when the stream hit it, else its text chunks."""
    if usage_tokens is not None:
        return usage_tokens
    if finish == "length":
        return max_tokens
    return text_chunks
