"""Which cached KV cells a new sequence can start from: shared prompt prefixes.

A finished sequence's cells are copied out of the KV cache into host memory ("saved") and removed
from it; a new sequence that begins with the same tokens (a system prompt many clients send, a
conversation that goes on) has them copied back and skips decoding the shared part. A prefix held by
a running sequence is shared by copying its cells' sequence ids (no data is copied in a unified KV
cache), and a pre-empted sequence resumes from its own saved cells.

Why not leave finished sequences' cells in the cache, as this engine did: llama.cpp attends over, and
builds a mask for, every cell up to the highest one in use, so idle cells make every later decode
slower. With 28 finished 135-token sequences left in a 4,096-cell cache, a 120-token prefill of the
tiny model took 2.35-2.62 ms against 0.90-1.20 with their cells saved out, and a one-token decode
175-194 against 94-154 us (pinaivu_local/bench/idle_cells.py). llama-server saves idle slots out the
same way (its `--cache-idle-slots`).

Reuse happens only within one scope (by default an API key): a faster first token would
otherwise tell one tenant what another one recently sent, as vLLM's cache salting prevents.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Shorter shared prefixes are not worth the bookkeeping.
MIN_REUSE = 8
# A request waits for another's prefill (a step or more) only to save at least this many tokens of its own.
MIN_WAIT = 64


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    # Slice comparisons run token by token in C: spans that double while the lists agree, then halving
    # the span that differs. A difference near the start (the usual case) costs two short slices.
    n = min(len(a), len(b))
    same, span = 0, MIN_REUSE
    while same < n:
        end = min(same + span, n)
        if a[same:end] != b[same:end]:
            break
        same, span = end, span * 2
    else:
        return n
    differ = end  # a[:same] == b[:same] and a[:differ] != b[:differ]
    while differ - same > 1:
        middle = (same + differ) // 2
        if a[same:middle] == b[same:middle]:
            same = middle
        else:
            differ = middle
    return same


@dataclass(eq=False)
class SavedPrompt:
    """A finished sequence's cells copied out of the KV cache: the tokens they hold, whose they are, the copy."""

    tokens: list[int] = field(repr=False)
    scope: str
    state: ctypes.Array[Any] = field(repr=False)  # what llama_state_seq_get_data wrote (engine/kv_state.py)


@dataclass(frozen=True)
class Reuse:
    """Where a new sequence's first `length` tokens already are: a running slot's cells, or a saved prompt."""

    length: int
    slot: int = -1
    saved: SavedPrompt | None = None


class SavedPrompts:
    """Saved prompts, the least recently used dropped first beyond `capacity` tokens or `max_bytes` of copies."""

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._prompts: OrderedDict[int, SavedPrompt] = OrderedDict()  # by id, least recently used first
        self._tokens = 0
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._prompts)

    def tokens(self) -> int:
        """Tokens the saved prompts hold."""
        return self._tokens

    @property
    def keeps_any(self) -> bool:
        """False when no memory is allowed: then nothing is worth copying out."""
        return self.max_bytes != 0

    def add(self, prompt: SavedPrompt) -> None:
        """Keep `prompt`, in place of the saved prompts of its scope it extends (a conversation's earlier turn)."""
        if not self._within(len(prompt.tokens), len(prompt.state)):
            return
        for old in list(self._prompts.values()):
            if old.scope == prompt.scope and prompt.tokens[: len(old.tokens)] == old.tokens:
                self._drop(old)
        self._prompts[id(prompt)] = prompt
        self._tokens += len(prompt.tokens)
        self._bytes += len(prompt.state)
        while not self._within(self._tokens, self._bytes):
            self._drop(next(iter(self._prompts.values())))

    def used(self, prompt: SavedPrompt) -> None:
        """`prompt` served a request: it is the last to be dropped (if it is still kept)."""
        if id(prompt) in self._prompts:
            self._prompts.move_to_end(id(prompt))

    def best(self, tokens: list[int], scope: str, running: Iterable[tuple[int, str, list[int], int]]) -> Reuse | None:
        """The longest reusable prefix of `tokens` within `scope`, from a running sequence or a saved prompt.

        `running` lists (slot, scope, tokens, how many of them have cells) of the running sequences. A running
        sequence wins a tie: sharing its cells copies no data.
        """
        # The last token is always decoded again: its logits are needed for the first sample.
        usable = len(tokens) - 1
        best: Reuse | None = None
        for slot, owner, theirs, cached in running:
            if owner == scope:
                length = min(common_prefix(theirs, tokens), cached, usable)
                if best is None or length > best.length:
                    best = Reuse(length, slot=slot)
        for saved in self._prompts.values():
            # Only one that shares more than the best so far is worth measuring: a single slice comparison.
            beat = best.length + 1 if best else MIN_REUSE
            if saved.scope != scope or beat > usable or saved.tokens[:beat] != tokens[:beat]:
                continue
            best = Reuse(min(common_prefix(saved.tokens, tokens), usable), saved=saved)
        if best is None or best.length < MIN_REUSE:
            return None
        return best

    def _within(self, tokens: int, n_bytes: int) -> bool:
        return tokens <= self.capacity and (self.max_bytes is None or n_bytes <= self.max_bytes)

    def _drop(self, prompt: SavedPrompt) -> None:
        del self._prompts[id(prompt)]
        self._tokens -= len(prompt.tokens)
        self._bytes -= len(prompt.state)


def waits_for_prefill(
    tokens: list[int], scope: str, reusable: int, prefilling: Iterable[tuple[str, list[int], int]]
) -> bool:
    """Whether a sequence should wait for a prefill under way rather than compute the same prefix itself.

    `reusable`: how many of its tokens it can take from the cache now; `prefilling` lists (scope,
    tokens, tokens cached so far) of running sequences still prefilling. It waits when one of its own
    scope will hold, once its prefill is done, at least MIN_WAIT more of its leading tokens: then
    those cells are computed once and copied, however many requests share them.
    """
    usable = len(tokens) - 1  # the last token is always decoded again
    for owner, theirs, cached in prefilling:
        if owner != scope:
            continue
        shared = min(common_prefix(theirs, tokens), usable)
        if cached < shared and shared - reusable >= MIN_WAIT:
            return True
    return False
