"""Turns one finished (or failed, or abandoned) inference request into its request-log record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pinaivu_local.api.flow.backends import PlacedGeneration
from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.api.flow.request import RunIdentity
from pinaivu_local.clock import utcnow
from pinaivu_local.engine.generation import Usage
from pinaivu_local.engine.prepared import PreparedRequest
from pinaivu_local.requestlog.commitment import canonical_json, input_digest, output_digest
from pinaivu_local.requestlog.records import FinishedRequest


@dataclass(frozen=True)
class RequestTrace:
    """What a record needs that is known when the request starts."""

    identity: RunIdentity
    principal: Principal
    prepared: PreparedRequest
    committed_input: Any  # the messages as sent (chat) or the prompt (text)
    log_content: bool
    replay_of: str | None = None  # a verification replay: the request it runs again
    tool_names: tuple[str, ...] = ()  # tools the output may call (shapes the response, not the record)
    structure_digest: str | None = None  # SHA-256 of tools / tool_choice / response_format as sent
    created_at: datetime = field(default_factory=utcnow)

    def record(
        self,
        generation: PlacedGeneration,
        text: str,
        *,
        status: int,
        finish_reason: str | None = None,
        usage: Usage | None = None,
        error: str | None = None,
    ) -> FinishedRequest:
        """The request as a record, with the output `text` it produced."""
        # A node's usage is the count (the gateway may only have estimated it); locally they agree.
        prompt_tokens = usage.prompt_tokens if usage else len(self.prepared.prompt)
        timings = generation.timings()
        completion_tokens = usage.completion_tokens if usage else generation.tokens_used - prompt_tokens
        decode_s = timings.total_s - (timings.first_token_s or timings.total_s)
        # tokens after the first, over the time after the first: the decoding speed
        speed = (completion_tokens - 1) / decode_s if completion_tokens > 1 and decode_s > 0 else None
        return FinishedRequest(
            request_id=self.identity.request_id,
            created_at=self.created_at,
            kind=self.identity.kind,
            key_id=self.principal.key_id,
            key_name=self.principal.name,
            model_id=self.prepared.model_id,
            # Read at the end: failover may have moved it to another node, with another model file.
            model_sha256=generation.model_sha256,
            status_code=status,
            finish_reason=finish_reason,
            error=error,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            queue_ms=round(timings.queue_s * 1000, 3),
            ttft_ms=None if timings.first_token_s is None else round(timings.first_token_s * 1000, 3),
            total_ms=round(timings.total_s * 1000, 3),
            tokens_per_s=None if speed is None else round(speed, 3),
            sampling=self._sampling_json(),
            input_sha256=input_digest(self.committed_input),
            output_sha256=output_digest(text) if status == 200 else None,
            input_content=canonical_json(self.committed_input) if self.log_content else None,
            output_content=text if self.log_content else None,
            replay_of=self.replay_of,
            node=generation.node,
            usage_source=generation.usage_source,
            # A node's receipt checked against its pinned key (fleet/remote.py); a local generation has none.
            receipt_verified=getattr(generation, "receipt_verified", None),
        )

    def _sampling_json(self) -> str:
        """The sampling JSON, with the digest of the structure fields: a replay must be given them again."""
        text = self.prepared.sampling.to_json(self.prepared.max_tokens)
        if self.structure_digest is None:
            return text
        return json.dumps({**json.loads(text), "structure_sha256": self.structure_digest}, sort_keys=True)
