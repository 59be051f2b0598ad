"""Response bodies and stream chunks in the exact shape of OpenAI's API, plus our request_id; token
logprobs in its two shapes, chat's `content` list and the legacy completions object."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from pinaivu_local.api.flow.request import FinishReason, Kind, RunIdentity
from pinaivu_local.api.flow.tool_calls import ArgumentsPiece, CallStart, ContentPiece, Event
from pinaivu_local.engine.generation import Usage
from pinaivu_local.engine.logprobs import TokenLogprob, TopLogprob
from pinaivu_local.wire import RECEIPT_FIELD

if TYPE_CHECKING:
    from pinaivu_local.api.flow.inference import Run

SYSTEM_FINGERPRINT = "fp_pinaivu_local"
# A completed answer's signed receipt: this header on a whole body, RECEIPT_FIELD on a stream's last chunk.
RECEIPT_HEADER = "x-pinaivu-receipt"


def tool_call_body(call: CallStart, arguments: str) -> dict[str, Any]:
    """One entry of a message's `tool_calls`."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object, with the prompt tokens served from the prefix cache."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


@dataclass(frozen=True)
class Completion:
    """One answer in OpenAI's shapes: the ids and fields every body and chunk repeats."""

    identity: RunIdentity
    include_usage: bool = False
    logprobs: bool = False  # the request asked for them: choices carry an object, not null

    @classmethod
    def of(cls, run: Run) -> Completion:
        """The shapes of a started run's answer, as its request asked for them."""
        asked = run.request
        return cls(run.identity, include_usage=asked.include_usage, logprobs=asked.sampling.logprobs is not None)

    @property
    def kind(self) -> Kind:
        """A chat completion or a text completion."""
        return self.identity.kind

    @property
    def request_id(self) -> str:
        """The id a user looks the request up by (also the x-request-id header)."""
        return self.identity.request_id

    def _head(self, obj: str) -> dict[str, Any]:
        return {**self._ids, "object": obj, **self._tail}

    @functools.cached_property
    def _ids(self) -> dict[str, Any]:
        # Built once per completion: a stream repeats them in every chunk.
        return {"id": f"{'chatcmpl' if self.kind == 'chat' else 'cmpl'}-{self.identity.hex_id}"}

    @functools.cached_property
    def _tail(self) -> dict[str, Any]:
        return {
            "created": self.identity.created,
            "model": self.identity.model_id,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "request_id": self.request_id,
        }

    def body(
        self,
        text: str | None,
        finish: FinishReason,
        usage: Usage,
        logprobs: Sequence[TokenLogprob] = (),
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The whole response of a non-streaming request (content None when it is only a tool call)."""
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": self._logprobs(logprobs),
                "finish_reason": finish,
            }
            head = self._head("chat.completion")
        else:
            choice = {"index": 0, "text": text, "logprobs": self._logprobs(logprobs), "finish_reason": finish}
            head = self._head("text_completion")
        return {**head, "choices": [choice], "usage": usage_body(usage)}

    def chunk(
        self,
        text: str | None,
        finish: FinishReason | None = None,
        *,
        first: bool = False,
        logprobs: Sequence[TokenLogprob] | None = None,
        receipt: dict[str, Any] | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> bytes:
        """One SSE event carrying new text (with its tokens' logprobs, if asked), a tool call fragment
        and/or the finish reason, and on the last one the receipt."""
        shown = None if logprobs is None else self._logprobs(logprobs)
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            if tool_calls:
                delta["tool_calls"] = tool_calls
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": shown, "finish_reason": finish}
            head = self._head("chat.completion.chunk")
        else:
            choice = {"index": 0, "text": text or "", "logprobs": shown, "finish_reason": finish}
            head = self._head("text_completion")
        body = {**head, "choices": [choice]}
        if self.include_usage:
            body["usage"] = None
        if receipt is not None:
            body[RECEIPT_FIELD] = receipt
        return sse(body)

    def event_chunk(self, event: Event) -> bytes:
        """The chunk of one parsed piece of output: content, a call's opening, or more of its arguments."""
        if isinstance(event, ContentPiece):
            return self.chunk(event.text)
        if isinstance(event, CallStart):
            return self.chunk(None, tool_calls=[{"index": 0, **tool_call_body(event, "")}])
        assert isinstance(event, ArgumentsPiece)
        return self.chunk(None, tool_calls=[{"index": 0, "function": {"arguments": event.text}}])

    def _logprobs(self, entries: Sequence[TokenLogprob]) -> dict[str, Any] | None:
        """A choice's `logprobs`: null unless the request asked for them."""
        if not self.logprobs:
            return None
        return chat_logprobs(entries) if self.kind == "chat" else legacy_logprobs(entries)

    def usage_chunk(self, usage: Usage, *, receipt: dict[str, Any] | None = None) -> bytes:
        """The last chunk of a stream with include_usage: no choices, the usage (and the receipt)."""
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        body = {**self._head(obj), "choices": [], "usage": usage_body(usage)}
        if receipt is not None:
            body[RECEIPT_FIELD] = receipt
        return sse(body)


_encode = msgspec.json.Encoder().encode  # compact UTF-8, several times faster than json.dumps on a chunk


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return b"data: " + _encode(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """A chat choice's `logprobs`: one entry per token, each with its most likely alternatives."""
    return {
        "content": [{**_candidate(e), "top_logprobs": [_candidate(t) for t in e.top]} for e in entries],
        "refusal": None,
    }


def legacy_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """A /v1/completions choice's `logprobs`: parallel lists, the alternatives as {token: logprob}.

    As OpenAI's legacy API does, each position's dict holds the requested most likely tokens and
    always the sampled one (so up to logprobs + 1 keys).
    """
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{**{t.token: t.logprob for t in e.top}, e.token: e.logprob} for e in entries],
        "text_offset": [e.text_offset for e in entries],
    }


def _candidate(entry: TokenLogprob | TopLogprob) -> dict[str, Any]:
    return {
        "token": entry.token,
        "logprob": entry.logprob,
        "bytes": None if entry.bytes is None else list(entry.bytes),
    }
