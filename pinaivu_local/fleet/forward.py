"""A request as the gateway forwards it to a node, and its size when the gateway cannot tokenize it.

Where the gateway's own engine serves the model, the prompt is tokenized there, exactly. Otherwise
(a pure gateway, or a model only nodes serve) the tokens limit reserves an upper bound: one token per
byte of the text plus a few per message (a byte-level BPE token is at least one byte), and the
completion budget as asked or, without max_tokens, the rest of the node's context; the reservation
is settled to the usage the node reports when the request ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pinaivu_local.engine.prepared import (
    ChatPrompt,
    PreparedRequest,
    PromptSource,
    TextPrompt,
    TokenPrompt,
    text_bytes,
)
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.fleet.node_usage import UsageBounds
from pinaivu_local.fleet.remote import RemoteRequest

# Chat-template tokens around each message (Llama 3's header and end-of-turn markers, with room to spare).
TOKENS_PER_MESSAGE = 8
# The context assumed for a node's model that does not say its own (an OpenAI-compatible server).
DEFAULT_CONTEXT = 4096
# What a node's template may add to a prompt beyond our estimate of it (a default system prompt, the
# tools' preamble): its reported prompt_tokens is believed up to twice the estimate and this.
TEMPLATE_ALLOWANCE = 1024


def estimated_prompt_tokens(source: PromptSource) -> int:
    """An upper bound on the prompt's tokens, without a tokenizer."""
    if isinstance(source, TokenPrompt):
        return len(source.tokens)
    if isinstance(source, TextPrompt):
        return len(source.text.encode()) + 1
    # Every byte the template writes (content, call names and arguments, tools), a token at most each.
    return text_bytes(source) + TOKENS_PER_MESSAGE * (len(source.messages) + 1)


def estimated(
    model: str, source: PromptSource, sampling: SamplingParams, max_tokens: int | None, context: int | None
) -> PreparedRequest:
    """What the tokens limit reserves for a request the gateway cannot tokenize (see the module's note)."""
    prompt = estimated_prompt_tokens(source)
    budget = max_tokens if max_tokens is not None else max(1, (context or DEFAULT_CONTEXT) - prompt)
    # The prompt stands in as that many placeholder ids: only its length is used (records, the reservation).
    return PreparedRequest(model, [0] * prompt, budget, sampling)


def remote_request(
    kind: str,
    model: str,
    source: PromptSource,
    sampling: SamplingParams,
    max_tokens: int | None,
    prompt_tokens: int,
    *,
    budget: int,
    sent_messages: Any = None,
    node_fields: Mapping[str, Any] | None = None,
) -> RemoteRequest:
    """The OpenAI request a node gets: the same prompt and sampling, always streamed with usage.

    A chat's messages go as the client sent them (`sent_messages`), not as our template takes them:
    a call's arguments stay the string they were (a node refuses an object there, as OpenAI does).
    `node_fields`: a chat's tools, tool_choice, parallel_tool_calls and response_format in OpenAI chat's
    shapes (a chat's as the client sent them); logprobs go in the shape of the endpoint (chat's or legacy).
    `budget`: the completion tokens it may use (max_tokens, or what the reservation allowed), past which
    the gateway stops reading; the node's usage is believed within it and the prompt's upper bound.
    """
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    if isinstance(source, ChatPrompt):
        body["messages"] = source.messages if sent_messages is None else sent_messages
    else:
        body["prompt"] = source.text if isinstance(source, TextPrompt) else source.tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
    )
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in sampling.logit_bias.items()}
    if sampling.ignore_eos:
        body["ignore_eos"] = True
    if node_fields and isinstance(source, ChatPrompt):
        body.update(node_fields)
    if sampling.logprobs is not None:
        if kind == "chat":
            body.update(logprobs=True, top_logprobs=sampling.logprobs)
        else:
            body["logprobs"] = sampling.logprobs
    path = "/chat/completions" if kind == "chat" else "/completions"
    bound = 2 * max(prompt_tokens, estimated_prompt_tokens(source)) + TEMPLATE_ALLOWANCE
    bounds = UsageBounds(prompt=bound, completion=budget)
    return RemoteRequest(
        model=model,
        path=path,
        body=body,
        prompt_tokens=prompt_tokens,
        bounds=bounds,
        top_logprobs=sampling.logprobs,
    )
