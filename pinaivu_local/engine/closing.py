"""Test models close what they open: under a constraint, the token that ends the current value wins.

A random-weight model held to a grammar never chooses to stop: an integer grows digit by digit and a
string runs to the budget. For a test model (a catalog entry with `test_model`), each guided step takes
the first closing token the grammar allows there, chosen by where the output stands. Outside a JSON
string: `}`, `]`, the end of the output, then `,`. Inside one: its closing quote, else a character a
format or pattern waits for before it may close (the `Z` that ends a date-time's seconds, an email's
`@`, a domain's `.`, a URI's `:`, a duration's `D` or `S`), each at most once a string, so none
repeats itself forever. Where none is allowed (a value's first character, a required key, the digits
a format needs) the model samples among what the grammar allows, as always. Every value thus ends as
soon as its schema lets it, and the output is a short valid instance. Real models never get one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from llguidance import LLTokenizer

_QUOTE, _BACKSLASH = 0x22, 0x5C
# Inside a string, in order of preference: what ends it, then what formats and patterns wait for.
_IN_STRING = '"Z@.:DS'
_OUTSIDE = "}]"  # then the end of the output, then ","


@dataclass(frozen=True)
class Closers:
    """A vocabulary's closing tokens, in order of preference, inside a JSON string and outside one."""

    in_string: tuple[tuple[int, int], ...]  # (token, its one byte)
    outside: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: LLTokenizer) -> Closers:
        """The closers of `tokenizer`'s vocabulary (a character that is no single token there is left out)."""

        def ids(texts: str) -> list[tuple[int, int]]:
            pairs = [(tokenizer.tokenize_bytes(text.encode()), ord(text)) for text in texts]
            return [(tokens[0], byte) for tokens, byte in pairs if len(tokens) == 1]

        outside = [token for token, _ in ids(_OUTSIDE)] + [tokenizer.eos_token] + [t for t, _ in ids(",")]
        return cls(in_string=tuple(ids(_IN_STRING)), outside=tuple(outside))


class ValueCloser:
    """One guided sequence's choice of closer: follows its output to know whether it is inside a string."""

    def __init__(self, closers: Closers) -> None:
        self._closers = closers
        self._in_string = False
        self._escaped = False
        self._taken: set[int] = set()  # the closers taken inside the current string

    def feed(self, data: bytes) -> None:
        """Follow the bytes of tokens the grammar took."""
        for byte in data:
            if self._escaped:
                self._escaped = False
            elif self._in_string and byte == _BACKSLASH:
                self._escaped = True
            elif byte == _QUOTE:
                self._in_string = not self._in_string
                self._taken.clear()

    def pick(self, allowed: npt.NDArray[np.int32]) -> int | None:
        """The first closer the mask `allowed` (llguidance's bits, 32 tokens a word) lets through, if any."""
        if not self._in_string:
            return next((token for token in self._closers.outside if _allows(allowed, token)), None)
        for token, byte in self._closers.in_string:
            # The quote ends the string; any other closer is text there too, and taken again and again
            # (`Z.Z.Z...`) it would never end.
            if byte not in self._taken and _allows(allowed, token):
                if byte != _QUOTE:
                    self._taken.add(byte)
                return token
        return None


def _allows(mask: npt.NDArray[np.int32], token: int) -> bool:
    return bool((int(mask[token >> 5]) >> (token & 31)) & 1)
