"""An inference request as every API family hands it to the shared flow: validated, not yet sized."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pinaivu_local.engine.prepared import Constraint, PromptSource
from pinaivu_local.engine.sampling import SamplingParams

# A chat (messages rendered with the model's template) or a text completion (a prompt as it is); an
# Anthropic Messages request, or an OpenAI Responses one, is a chat whose input (committed_input) has
# that API's shape.
Kind = Literal["chat", "text", "messages", "responses"]
# How an answer ended: the engine's reasons, or on a whole call to one of the request's tools.
FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class InferenceRequest:
    """A completion request as a route hands it over, validated but not yet sized."""

    kind: Kind
    model: str
    source: PromptSource
    sampling: SamplingParams
    max_tokens: int | None  # as asked; None: the rest of the context
    committed_input: Any  # what the commitment hashes: the messages as sent, or the prompt
    # A chat's messages as OpenAI's chat completions carry them, which is how a gateway's nodes are sent
    # them, for an API family whose own input (committed_input) has another shape; None: committed_input.
    node_messages: Any = None
    # Its tools, tool_choice, parallel_tool_calls and response_format in OpenAI chat's shapes, as a gateway
    # sends them to its nodes: a chat's as the client sent them, another family's translated (None: none).
    node_fields: Mapping[str, Any] | None = None
    include_usage: bool = False  # a stream ends with a usage chunk
    # Answered as a stream; a whole answer reaches the client only at its end, so a node that fails
    # midway can still be left for another (fleet/remote.py).
    streamed: bool = True
    # A verification replay at a gateway: only a node known to hold this very model file may run it.
    model_sha256: str | None = None
    constraint: Constraint | None = None  # what tools / response_format hold the output to
    tool_names: tuple[str, ...] = ()  # the output is parsed for a call to one of these
    structure_digest: str | None = None  # SHA-256 of tools, tool_choice, ... as sent: kept in the record
    text_interval_s: float | None = None  # how often its new text goes out; None: the server's setting
    body_bytes: int | None = None  # the size of the body it came in (None: unknown, sized as large)


@dataclass(frozen=True)
class RunIdentity:
    """Who a started request is, whatever API family answers it: its ids, its model, when it began."""

    kind: Kind
    model_id: str
    hex_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def request_id(self) -> str:
        """The id a user looks the request up by (also the x-request-id header)."""
        return f"req_{self.hex_id}"
