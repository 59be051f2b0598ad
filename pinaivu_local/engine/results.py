"""What the engine takes and gives back: plain data, no ctypes, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    """New text of one request; the last one has a finish reason and the usage."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
