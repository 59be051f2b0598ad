"""One request inside a model's scheduler: its tokens, sampling, pacing, times and cached cells."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import llama_cpp.llama_cpp as llama

from pinaivu_local.engine.constraints import Guide
from pinaivu_local.engine.detokenize import IncrementalText
from pinaivu_local.engine.generation import Delta, FinishReason, Usage
from pinaivu_local.engine.logprobs import TokenLogprob, TokenTrail
from pinaivu_local.engine.outbox import Outbox, TextPacing
from pinaivu_local.engine.prefix_cache import SavedPrompt
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.stops import StopMatcher


@dataclass(eq=False)
class Sequence:
    """One request inside the scheduler. Touched by the engine thread only, except `cancelled`."""

    prompt: list[int]
    params: SamplingParams
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    queue: Outbox
    # built before queueing, so a sampler that cannot be built never reaches the thread; None when plain greedy
    sampler: object | None
    cache_scope: str = ""  # only sequences of the same scope share cached prompt prefixes
    guide: Guide | None = None  # constrained decoding: follows generated tokens only, so re-prefill keeps it
    cancelled: bool = False
    slot: int = -1
    # prompt + generated tokens; the last one is decoded in the next step for the next logits
    tokens: list[int] = field(init=False)
    n_cached: int = 0  # leading tokens whose KV cells are in the cache
    n_reused: int = 0  # prompt tokens taken from the prefix cache when first admitted (usage's cached_tokens)
    suspended: SavedPrompt | None = None  # its cells, saved out of the cache when it was pre-empted
    n_generated: int = 0
    pacing: TextPacing = field(default_factory=lambda: TextPacing(0.0))  # new text: at once, or held a while
    # monotonic times: queued, given a slot (first time), first token, finished
    submitted_at: float = field(default_factory=time.monotonic)
    admitted_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    text: IncrementalText = field(default_factory=IncrementalText)
    stops: StopMatcher = field(init=False)
    trail: TokenTrail | None = field(init=False)  # only when the request asked for logprobs

    def __post_init__(self) -> None:
        self.tokens = list(self.prompt)
        self.stops = StopMatcher(self.params.stop)
        self.trail = None if self.params.logprobs is None else TokenTrail(self.params.logprobs)

    def free_sampler(self) -> None:
        """Free its llama.cpp sampler chain (once; plain greedy sequences have none)."""
        if self.sampler is not None:
            llama.llama_sampler_free(self.sampler)
            self.sampler = None

    def drain(self) -> str:
        """Text the decoder and stop matcher still hold at the end of a generation."""
        tail, hit = self.stops.push(self.text.flush())
        return tail if hit else tail + self.stops.flush()

    def new_text(self, text: str) -> Delta | None:
        """The delta to hand `text` over in now, or None while its interval holds it back."""
        if self.trail is not None:  # with logprobs every delta carries its own tokens' entries
            return Delta(text, logprobs=self.logprobs_for(text, final=False))
        ready = self.pacing.push(text)
        return Delta(ready) if ready else None

    def last_delta(self, reason: FinishReason, text: str) -> Delta:
        """The generation's last delta: the text held back and `text`, the finish reason and the usage."""
        text = self.pacing.drain() + text
        usage = Usage(prompt_tokens=len(self.prompt), completion_tokens=self.n_generated, cached_tokens=self.n_reused)
        logprobs = self.logprobs_for(text, final=True)
        return Delta(text, finish_reason=reason, usage=usage, logprobs=logprobs, stop_sequence=self.stops.matched)

    def ending(self, last: object) -> list[object]:
        """It ends now with `last` (the end marker or an error): what its reader gets, held text first."""
        self.finished_at = time.monotonic()
        held = self.pacing.drain()
        return [Delta(held), last] if held else [last]

    def logprobs_for(self, text: str, *, final: bool) -> tuple[TokenLogprob, ...] | None:
        """The entries of the tokens whose text `text` completes, when the request asked for logprobs."""
        return None if self.trail is None else self.trail.release(text, final=final)
