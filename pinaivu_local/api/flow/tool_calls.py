"""Turns a model's output into OpenAI tool calls, as a stream or at once, with one parser for both.

Llama 3.x answers a call with `{"name": ..., "parameters": {...}}`, sometimes after `<|python_tag|>`
and sometimes after some text. Text that cannot be a call to a known tool stays content; text
that may still become one is held back, so no half-parsed call ever leaks into `content`. Llama
3.2's template takes one call per turn: the first call is the only one.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass

PYTHON_TAG = "<|python_tag|>"
# The opening of a call, up to where its arguments start.
_OPENING = re.compile(r'\{\s*"name"\s*:\s*"([A-Za-z0-9_-]{1,64})"\s*,\s*"parameters"\s*:\s*')
_ID_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    """OpenAI's shape of a tool call id: `call_` and 24 letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class ContentPiece:
    """Text for `content`."""

    text: str


@dataclass(frozen=True)
class CallStart:
    """A call opens: its id and function name."""

    id: str
    name: str


@dataclass(frozen=True)
class ArgumentsPiece:
    """More of the open call's `function.arguments` (JSON text)."""

    text: str


Event = ContentPiece | CallStart | ArgumentsPiece


@dataclass(frozen=True)
class ParsedOutput:
    """A whole output: content (None when empty) and at most one call."""

    content: str | None
    call: CallStart | None
    arguments: str


class ToolCallParser:
    """Feed text as it is generated; get content and call events back."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = set(names)
        self._held = ""  # text not yet given out
        self._mode = "text"  # text -> arguments -> closing -> after
        self._arguments = ""  # arguments given out so far (mode "arguments")
        self.closed = False  # the call's arguments were whole JSON and its object was closed

    def push(self, text: str) -> list[Event]:
        """New output text; the events it settles."""
        self._held = (self._held + text).replace(PYTHON_TAG, "")
        if self._mode == "text":
            return self._text()
        if self._mode == "arguments":
            return self._more_arguments()
        if self._mode == "closing":
            return self._closing()
        return self._content(len(self._held))

    def finish(self) -> list[Event]:
        """The output ended: whatever is held goes out (as content, unless it is a call's arguments)."""
        if self._mode == "arguments":
            rest, self._held = self._held, ""
            return [ArgumentsPiece(rest)] if rest else []
        return self._content(len(self._held))

    def _text(self) -> list[Event]:
        events: list[Event] = []
        while self._mode == "text":
            brace = self._held.find("{")
            if brace < 0:  # all text, but a tag may be arriving in pieces
                return events + self._content(len(self._held) - _tag_start(self._held))
            events += self._content(brace)
            opening = _OPENING.match(self._held)
            if opening and opening.group(1) in self._names:
                events.append(CallStart(new_call_id(), opening.group(1)))
                self._held = self._held[opening.end() :]
                self._mode = "arguments"
                return events + self._more_arguments()
            if opening or not _may_open(self._held):
                events += self._content(1)  # this brace opens no call: text, and look further
                continue
            return events  # may still become a call: hold it
        return events

    def _more_arguments(self) -> list[Event]:
        # The arguments are one JSON value; until it is complete every character belongs to it.
        if not self._arguments:
            self._held = self._held.lstrip()
        received = self._arguments + self._held
        lead = len(received) - len(received.lstrip())
        try:
            _, end = json.JSONDecoder().raw_decode(received, lead)
        except json.JSONDecodeError:
            piece, self._held = self._held, ""
            self._arguments = received
            return [ArgumentsPiece(piece)] if piece else []
        piece = received[len(self._arguments) : end]
        self._arguments, self._held = received[:end], received[end:]
        self._mode = "closing"
        return ([ArgumentsPiece(piece)] if piece else []) + self._closing()

    def _closing(self) -> list[Event]:
        """After the arguments: the brace that closes the call (blanks before it are held)."""
        rest = self._held.lstrip()
        if not rest:
            return []
        if rest.startswith("}"):
            self.closed = True
            self._held = rest[1:]
        self._mode = "after"
        return self._content(len(self._held))

    def _content(self, size: int) -> list[Event]:
        piece, self._held = self._held[:size], self._held[size:]
        return [ContentPiece(piece)] if piece else []


def _nested(pieces: list[str]) -> str:
    """A pattern matching any prefix of the pieces in sequence: a, a b, a b c, ..."""
    return pieces[0] + ("(" + _nested(pieces[1:]) + ")?" if len(pieces) > 1 else "")


# Any prefix of a call's opening: what may still become one.
_OPENING_PREFIX = re.compile(
    _nested(
        [
            r"\{",
            r"\s*",
            '"',
            *"name",
            '"',
            r"\s*",
            ":",
            r"\s*",
            '"',
            "[A-Za-z0-9_-]{0,64}",
            '"',
            r"\s*",
            ",",
            r"\s*",
            '"',
            *"parameters",
            '"',
            r"\s*",
            ":",
        ]
    )
    + "$"
)


def _tag_start(text: str) -> int:
    """Length of the longest end of `text` that begins <|python_tag|>."""
    return next((n for n in range(min(len(text), len(PYTHON_TAG) - 1), 0, -1) if PYTHON_TAG.startswith(text[-n:])), 0)


def _may_open(held: str) -> bool:
    """Whether `held` (starting with a brace) could still grow into a call's opening."""
    return _OPENING_PREFIX.match(held) is not None


def parse_output(text: str, names: tuple[str, ...]) -> ParsedOutput:
    """A whole output as content and call: the stream parser, fed at once."""
    parser = ToolCallParser(names)
    events = parser.push(text) + parser.finish()
    call = next((e for e in events if isinstance(e, CallStart)), None)
    if call is not None and not parser.closed:  # malformed: the model's text, as it wrote it
        return ParsedOutput(text.replace(PYTHON_TAG, "").strip() or None, None, "")
    content = "".join(e.text for e in events if isinstance(e, ContentPiece)).strip()
    arguments = "".join(e.text for e in events if isinstance(e, ArgumentsPiece))
    return ParsedOutput(content or None, call, arguments.strip())
