"""Which cached KV cells a new sequence can start from: shared prompt prefixes.

A finished sequence leaves its cells in its slot ("warm"); a new sequence that begins with the
same tokens (a system prompt many clients send, a conversation that goes on) takes that slot and
skips decoding the shared part. A prefix held by a running sequence is shared by copying its
cells' sequence ids (no data is copied in a unified KV cache).

Reuse happens only within one scope (by default an API key): a faster first token would
otherwise tell one tenant what another one recently sent, as vLLM's cache salting prevents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Shorter shared prefixes are not worth the bookkeeping.
MIN_REUSE = 8
# A request waits for another's prefill (a step or more) only to save at least this many tokens of its own.
MIN_WAIT = 64


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class Reuse:
    """Where a new sequence's first `length` tokens already are: a warm free slot, or a running slot."""

    slot: int
    length: int
    from_running: bool


class WarmSlots:
    """Free slots whose cells still hold their last sequence's tokens."""

    def __init__(self) -> None:
        self._tokens: dict[int, list[int]] = {}
        self._scopes: dict[int, str] = {}

    def keep(self, slot: int, tokens: list[int], scope: str) -> None:
        """A sequence of `scope` left `slot` with `tokens` in its cells."""
        if tokens:
            self._tokens[slot] = tokens
            self._scopes[slot] = scope

    def forget(self, slot: int) -> None:
        """The slot's cells are gone or about to be overwritten."""
        self._tokens.pop(slot, None)
        self._scopes.pop(slot, None)

    def slots(self) -> list[int]:
        """Warm slots."""
        return list(self._tokens)

    def cells(self) -> int:
        """KV cells the warm slots hold."""
        return sum(len(t) for t in self._tokens.values())

    def best(
        self, tokens: list[int], scope: str, free: Iterable[int], running: Iterable[tuple[int, str, list[int]]]
    ) -> Reuse | None:
        """The longest reusable prefix of `tokens` within `scope`, from a free warm slot or a running sequence.

        `running` lists (slot, scope, tokens whose cells are cached) of the running sequences.
        """
        # The last token is always decoded again: its logits are needed for the first sample.
        usable = len(tokens) - 1
        candidates = [
            Reuse(s, common_prefix(self._tokens.get(s, []), tokens), False)
            for s in free
            if self._scopes.get(s) == scope
        ]
        candidates += [Reuse(s, common_prefix(cached, tokens), True) for s, owner, cached in running if owner == scope]
        best = max(candidates, key=lambda r: (r.length, not r.from_running), default=None)
        if best is None or min(best.length, usable) < MIN_REUSE:
            return None
        return Reuse(best.slot, min(best.length, usable), best.from_running)


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
