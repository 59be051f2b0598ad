"""The engine's contract with whoever runs a request: what a generation gives back, and how it is held.

Plain data, no ctypes, no HTTP. A local generation (engine/stream.py) and a node's (fleet/remote.py)
are both a `Generation`; the inference flow knows no other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from pinaivu_local.engine.logprobs import TokenLogprob

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Usage:
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens whose KV cells came from the prefix cache, not a decode

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Delta:
    """New text of one request; the last one has a finish reason and the usage.

    `logprobs` (only when the request asked for them): the tokens whose text this delta completes.
    """

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    stop_sequence: str | None = None  # on the last delta: the stop string that ended it, if one did

    @property
    def text_only(self) -> bool:
        """Whether it carries nothing but text (every other field at its default), so texts can be joined."""
        return all(getattr(self, name) == default for name, default in _OTHER_DEFAULTS)


# Every field but the text, with its default: a field added later keeps its deltas from being joined.
_OTHER_DEFAULTS = tuple((f.name, f.default) for f in dataclasses.fields(Delta) if f.name != "text")


def coalesce(first: Delta, queued: list[Delta]) -> Delta:
    """`first` and the text-only deltas queued behind it as one delta (one SSE chunk, not several).

    The engine hands out a delta per token per step; when the event loop is behind, a stream finds
    several waiting, and sending them as one chunk costs one trip through the HTTP stack, not many.
    """
    if not first.text_only or not queued:
        return first
    return Delta(first.text + "".join(d.text for d in queued))


@dataclass(frozen=True)
class Timings:
    """Where a request's time went, in seconds."""

    queue_s: float
    first_token_s: float | None
    total_s: float


class Generation(Protocol):
    """One request being generated: iterate for Deltas (the last has the finish reason and the usage)."""

    def __aiter__(self) -> AsyncIterator[Delta]: ...

    def timings(self) -> Timings:
        """Queue time, time to first token and total time so far, in seconds."""
        ...

    @property
    def tokens_used(self) -> int:
        """Prompt plus tokens generated so far (what an unfinished request is charged)."""
        ...

    def close(self) -> None:
        """Stop generating (idempotent): the client is gone, or the request ended."""
        ...
