"""Incremental, UTF-8-safe detokenization for streaming."""

from __future__ import annotations

import codecs


class IncrementalText:
    """Turns token byte pieces into text, holding back bytes of an unfinished character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; return the text that is complete so far."""
        return self._decoder.decode(piece)

    @property
    def unfinished(self) -> bool:
        """Whether bytes of a character not complete yet are held back."""
        return bool(self._decoder.getstate()[0])

    def flush(self) -> str:
        """At the end of a generation: whatever is left, invalid bytes replaced."""
        return self._decoder.decode(b"", final=True)
