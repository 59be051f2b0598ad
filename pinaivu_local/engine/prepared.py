"""What a request becomes on the engine side before it is queued: prompt tokens, budget, sampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pinaivu_local.engine.sampling import SamplingParams


@dataclass(frozen=True)
class ChatPrompt:
    """A conversation, rendered with the model's own chat template (which also lists `tools`)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None  # OpenAI function tools, as the template takes them


@dataclass(frozen=True)
class TextPrompt:
    """A plain completion prompt."""

    text: str


@dataclass(frozen=True)
class TokenPrompt:
    """A prompt already given as token ids."""

    tokens: list[int]


PromptSource = ChatPrompt | TextPrompt | TokenPrompt


def text_bytes(source: PromptSource) -> int:
    """Bytes of client data the rendered prompt holds, at least (0 for token ids, which are counted as they are).

    For a chat: every message's content, every call's name and arguments, and the tools, all of which
    the chat template writes; a size judged on `content` alone let megabytes of arguments through.
    """
    if isinstance(source, ChatPrompt):
        total = data_bytes(source.tools)
        for message in source.messages:
            total += len((message.get("content") or "").encode())
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                total += data_bytes(function.get("name")) + data_bytes(function.get("arguments"))
        return total
    if isinstance(source, TextPrompt):
        return len(source.text.encode())
    return 0


def data_bytes(value: Any) -> int:
    """What JSON data takes written out, at least: its strings' UTF-8 bytes (keys too), a byte per other value.

    Iterative, so no nesting can exhaust the stack.
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item.encode())
        elif isinstance(item, dict):
            stack += item.keys()
            stack += item.values()
        elif isinstance(item, list | tuple):
            stack += item
        elif item is not None:
            total += 1
    return total


def nesting_depth(value: Any) -> int:
    """How deeply JSON data nests (a scalar: 0, `[1]`: 1); iterative, so any depth can be measured."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list | tuple) else None
        if children is not None:
            deepest = max(deepest, depth + 1)
            stack += ((child, depth + 1) for child in children)
    return deepest


@dataclass(frozen=True)
class Constraint:
    """Output the sampler must keep to: an llguidance grammar, from the first token or once woken.

    A lazy constraint (a wake token or wake text) lets the model write freely until it opens a
    tool call; the tokens from the opening on are then held to the grammar.
    """

    grammar: str  # llguidance grammar text; compiled once per model, cached by this text
    wake_tokens: tuple[str, ...] = ()  # special tokens (their text) that wake it; what follows is fed
    wake_text: str | None = None  # wakes when the output opens (after blanks) with this text
    param: str = "response_format"  # the request field it comes from, named in errors
    # A call the model may or may not make (tool_choice "auto"): the same call held from the first token,
    # which a test model makes when the user spoke last (engine/scripted_turns.py).
    auto_call: str | None = None

    @property
    def lazy(self) -> bool:
        """Whether generation starts unconstrained."""
        return bool(self.wake_tokens or self.wake_text)


@dataclass(frozen=True)
class PreparedRequest:
    """A request a model can run: made once, by ModelEngine.prepare, which checked that it fits."""

    model_id: str
    prompt: list[int]
    max_tokens: int  # the completion budget: what was asked for, or the rest of the context
    sampling: SamplingParams
    cache_scope: str = ""  # cached prompt prefixes are shared only within one scope (an API key)
    constraint: Constraint | None = None

    @property
    def reserved_tokens(self) -> int:
        """What the rate limiter reserves until the request ends: prompt plus budget."""
        return len(self.prompt) + self.max_tokens
