"""Token logprobs in OpenAI's two shapes: chat's `content` list and the legacy completions object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pinaivu_local.engine.logprobs import TokenLogprob, TopLogprob


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
