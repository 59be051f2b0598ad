"""What a request becomes on the engine side before it is queued: prompt tokens, budget, sampling."""

from __future__ import annotations

from dataclasses import dataclass

from pinaivu_local.engine.sampling import SamplingParams


@dataclass(frozen=True)
class ChatPrompt:
    """A conversation, rendered with the model's own chat template."""

    messages: list[dict[str, str]]


@dataclass(frozen=True)
class TextPrompt:
    """A plain completion prompt."""

    text: str


@dataclass(frozen=True)
class TokenPrompt:
    """A prompt already given as token ids."""

    tokens: list[int]


PromptSource = ChatPrompt | TextPrompt | TokenPrompt


@dataclass(frozen=True)
class PreparedRequest:
    """A request a model can run: made once, by ModelEngine.prepare, which checked that it fits."""

    model_id: str
    prompt: list[int]
    max_tokens: int  # the completion budget: what was asked for, or the rest of the context
    sampling: SamplingParams
    cache_scope: str = ""  # cached prompt prefixes are shared only within one scope (an API key)

    @property
    def reserved_tokens(self) -> int:
        """What the rate limiter reserves until the request ends: prompt plus budget."""
        return len(self.prompt) + self.max_tokens
