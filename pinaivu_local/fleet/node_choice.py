"""One choice of a node's stream chunk as the engine's output: text, tool calls rebuilt as call text, logprobs.

A node is sent an OpenAI chat completion (tools, tool_choice, response_format and logprobs as the client
asked) and streams its calls back as OpenAI `tool_calls` deltas. The gateway writes each call back into
the model-neutral call text that api/flow/tool_calls.py parses, `{"name": ..., "parameters": ...}`,
with the node's `arguments` text in it byte for byte; so every API family reads a node's call exactly as
it reads one made by its own engine (the same parser, the same one call a turn: a node's later calls
come out as the text they are). Logprobs, chat's `content` entries or the legacy completions lists, become
the engine's TokenLogprob. Everything is checked for shape and size: a node's payload is never trusted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pinaivu_local.engine.logprobs import VERY_UNLIKELY, TokenLogprob, TopLogprob
from pinaivu_local.fleet.node_stream import MAX_TOKEN_TEXT_BYTES, NodeDropped

# The longest token text a node may report in logprobs: the longest token's bytes, as `bytes:\xNN` escapes.
MAX_LOGPROB_TOKEN_CHARS = 6 + 4 * MAX_TOKEN_TEXT_BYTES
# A tool's name, as OpenAI allows it (the parser takes no other).
MAX_TOOL_NAME = 64


@dataclass(frozen=True)
class ChoicePiece:
    """What one choice of a chunk adds: output text (calls rebuilt), whether it holds a token, its logprobs."""

    text: str
    tokens: bool  # it carries generated text (content or arguments): at least one token
    logprobs: tuple[TokenLogprob, ...] | None


class ChoiceReader:
    """Reads a node's choices in order, keeping which call is open; `top_logprobs`: how many were asked."""

    def __init__(self, top_logprobs: int | None) -> None:
        self._top = top_logprobs
        self._open: object = None  # the index of the call being written, if one is
        self._arguments = False  # the open call has had arguments text
        self._chars = 0  # characters of output before the next token (a legacy logprob's text_offset)

    def read(self, choice: dict[str, Any]) -> ChoicePiece:
        """One choice of a chunk; NodeDropped on a payload of the wrong shape."""
        parts: list[str] = []
        tokens = False
        if "delta" in choice:
            delta = choice["delta"]
            if not isinstance(delta, dict):
                raise NodeDropped("a delta that is not an object")
            content = delta.get("content")
            if content:
                parts.append(self._close() + _string(content, "content"))
                tokens = True
            for call in delta.get("tool_calls") or ():
                piece, had_arguments = self._call(call)
                parts.append(piece)
                tokens = tokens or had_arguments
        else:
            text = choice.get("text")
            if text:
                parts.append(_string(text, "text"))
                tokens = True
        logprobs = self._logprobs(choice.get("logprobs"))
        text = "".join(parts)
        self._chars += len(text)
        return ChoicePiece(text, tokens, logprobs)

    def finish(self) -> str:
        """The output ended: the text that closes the open call, if one is."""
        return self._close()

    def _call(self, call: object) -> tuple[str, bool]:
        """One `tool_calls` entry as call text: a new index opens a call (closing the one before)."""
        if not isinstance(call, dict):
            raise NodeDropped("a tool_calls entry that is not an object")
        function = call.get("function") or {}
        if not isinstance(function, dict):
            raise NodeDropped("a tool call whose function is not an object")
        index = call.get("index", 0)
        piece = ""
        if self._open is None or index != self._open:
            name = _string(function.get("name"), "a tool call's name")
            if not name or len(name) > MAX_TOOL_NAME:
                raise NodeDropped("a tool call without a name, or with one over 64 characters")
            piece = self._close() + '{"name": ' + json.dumps(name) + ', "parameters": '
            self._open, self._arguments = index, False
        arguments = function.get("arguments")
        if arguments is None or arguments == "":
            return piece, False
        self._arguments = True
        return piece + _string(arguments, "a tool call's arguments"), True

    def _close(self) -> str:
        """The end of the open call's text ('{}' first where it had no arguments); '' where none is open."""
        if self._open is None:
            return ""
        closing = "}" if self._arguments else "{}}"
        self._open = None
        return closing

    def _logprobs(self, value: object) -> tuple[TokenLogprob, ...] | None:
        if value is None:
            return None
        if self._top is None:
            raise NodeDropped("logprobs the request did not ask for")
        if not isinstance(value, dict):
            raise NodeDropped("logprobs that are not an object")
        if "content" in value:  # chat's shape
            entries = value.get("content") or []
            if not isinstance(entries, list):
                raise NodeDropped("logprobs content that is not a list")
            return tuple(self._chat_entry(entry, offset) for entry, offset in self._offsets(entries))
        tokens, logprobs, tops = value.get("tokens") or [], value.get("token_logprobs") or [], value.get("top_logprobs")
        if not (isinstance(tokens, list) and isinstance(logprobs, list) and len(tokens) == len(logprobs)):
            raise NodeDropped("legacy logprobs whose lists do not match")
        tops = tops if isinstance(tops, list) and len(tops) == len(tokens) else [None] * len(tokens)
        return tuple(
            self._legacy_entry(token, logprob, top, offset)
            for (token, offset), logprob, top in zip(self._offsets(tokens), logprobs, tops, strict=True)
        )

    def _offsets(self, entries: list[Any]) -> list[tuple[Any, int]]:
        """Each entry with the characters of output before its token (the chunk's tokens follow each other)."""
        offset, out = self._chars, []
        for entry in entries:
            out.append((entry, offset))
            token = entry.get("token") if isinstance(entry, dict) else entry
            offset += len(token) if isinstance(token, str) else 0
        return out

    def _chat_entry(self, entry: object, offset: int) -> TokenLogprob:
        if not isinstance(entry, dict):
            raise NodeDropped("a logprobs entry that is not an object")
        top = entry.get("top_logprobs") or []
        if not isinstance(top, list) or len(top) > (self._top or 0):
            raise NodeDropped(f"more top_logprobs than the {self._top} asked", "bound")
        alternatives = []
        for candidate in top:
            if not isinstance(candidate, dict):
                raise NodeDropped("a top_logprobs entry that is not an object")
            alternatives.append(TopLogprob(*_candidate(candidate)))
        return TokenLogprob(*_candidate(entry), tuple(alternatives), offset)

    def _legacy_entry(self, token: object, logprob: object, top: object, offset: int) -> TokenLogprob:
        text = _token(token)
        alternatives: list[TopLogprob] = []
        if isinstance(top, dict):
            # The legacy dict holds the asked alternatives and the sampled token: at most one more.
            if len(top) > (self._top or 0) + 1:
                raise NodeDropped(f"more top_logprobs than the {self._top} asked", "bound")
            ranked = sorted(((_token(t), _logprob(v)) for t, v in top.items()), key=lambda tv: -tv[1])
            alternatives = [TopLogprob(t, t.encode(), v) for t, v in ranked[: self._top]]
        return TokenLogprob(text, text.encode(), _logprob(logprob), tuple(alternatives), offset)


def _candidate(entry: dict[str, Any]) -> tuple[str, bytes | None, float]:
    """A chat logprobs entry's token, bytes and logprob, checked."""
    raw = entry.get("bytes")
    if raw is None:
        data = None
    elif (
        isinstance(raw, list)
        and len(raw) <= MAX_TOKEN_TEXT_BYTES
        and all(type(b) is int and 0 <= b <= 255 for b in raw)
    ):
        data = bytes(raw)
    else:
        raise NodeDropped("a logprobs entry whose bytes are not a short list of bytes")
    return _token(entry.get("token")), data, _logprob(entry.get("logprob"))


def _token(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_LOGPROB_TOKEN_CHARS:
        raise NodeDropped("a logprobs token that is not a short string")
    return value


def _logprob(value: object) -> float:
    """A logprob as a number at most 0 (a rounding error above it is 0; -inf is OpenAI's "very unlikely")."""
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value) or value > 1e-3:
        raise NodeDropped("a logprob that is not a number at most 0")
    return VERY_UNLIKELY if value == -math.inf else min(float(value), 0.0)


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise NodeDropped(f"{what} that is not a string")
    return value
