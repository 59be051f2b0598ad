"""Stop strings: cut generation at the first occurrence, never emitting the stop string."""

from __future__ import annotations


class StopMatcher:
    """Streams text through, holding back only what could still begin a stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self._longest = max((len(s) for s in self._stops), default=0)
        self.matched: str | None = None  # the stop string that was hit, once one is

    def push(self, text: str) -> tuple[str, bool]:
        """Feed text; return (text safe to emit, whether a stop string was hit)."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        found = [(i, s) for s in self._stops if (i := buffer.find(s)) >= 0]
        if found:
            cut, self.matched = min(found, key=lambda hit: hit[0])  # the first to occur (of equals: first listed)
            self._held = ""
            return buffer[:cut], True
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """At the end of a generation: text held back that turned out not to be a stop."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, buffer: str) -> int:
        """Length of the longest suffix of buffer that is a proper prefix of some stop string."""
        for size in range(min(len(buffer), self._longest - 1), 0, -1):
            tail = buffer[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0
