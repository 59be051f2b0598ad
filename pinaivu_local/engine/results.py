"""What the engine takes and gives back: plain data, no ctypes, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pinaivu_local.engine.logprobs import TokenLogprob

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Usage:
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int

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
