"""Follows one inference request to its end and turns it into a request-log record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pinaivu_local.api.auth import Principal
from pinaivu_local.api.openai_shapes import Completion
from pinaivu_local.clock import utcnow
from pinaivu_local.engine.results import Usage
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.engine.scheduler import GenerationStream
from pinaivu_local.requestlog.commitment import canonical_json, input_digest, output_digest
from pinaivu_local.requestlog.records import RequestRecord

# Status of a request whose client went away before it finished (nginx's convention).
CLIENT_CLOSED = 499


def sampling_json(params: SamplingParams, max_tokens: int) -> str:
    """Everything needed to replay the request, as JSON."""
    values = asdict(params)
    values["max_tokens"] = max_tokens
    values["stop"] = list(params.stop)
    values["logit_bias"] = {str(k): v for k, v in params.logit_bias.items()}
    return json.dumps(values, sort_keys=True)


def sampling_from_json(values: dict[str, Any]) -> tuple[SamplingParams, int | None]:
    """The sampling parameters and completion budget a record logged, to replay it."""
    params = SamplingParams(
        temperature=values.get("temperature", 1.0),
        top_p=values.get("top_p", 1.0),
        seed=values.get("seed"),
        stop=tuple(values.get("stop", ())),
        presence_penalty=values.get("presence_penalty", 0.0),
        frequency_penalty=values.get("frequency_penalty", 0.0),
        logit_bias={int(k): v for k, v in values.get("logit_bias", {}).items()},
        ignore_eos=values.get("ignore_eos", False),
    )
    return params, values.get("max_tokens")


@dataclass
class RequestTrace:
    """What a record needs, gathered while the request runs."""

    completion: Completion
    principal: Principal
    model_id: str
    params: SamplingParams
    max_tokens: int
    input_value: Any  # the canonical messages (chat) or prompt (text)
    prompt_tokens: int
    log_content: bool
    created_at: datetime = field(default_factory=utcnow)
    parts: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        """Output text as it is sent."""
        self.parts.append(text)

    def record(
        self,
        generation: GenerationStream,
        *,
        status: int,
        finish_reason: str | None = None,
        usage: Usage | None = None,
        error: str | None = None,
    ) -> RequestRecord:
        """The finished request as a record."""
        text = "".join(self.parts)
        timings = generation.timings()
        completion_tokens = usage.completion_tokens if usage else generation.tokens_used - self.prompt_tokens
        decode_s = timings.total_s - (timings.first_token_s or timings.total_s)
        # tokens after the first, over the time after the first: the decoding speed
        speed = (completion_tokens - 1) / decode_s if completion_tokens > 1 and decode_s > 0 else None
        return RequestRecord(
            request_id=self.completion.request_id,
            created_at=self.created_at,
            kind=self.completion.kind,
            key_id=self.principal.key_id,
            key_name=self.principal.name,
            model_id=self.model_id,
            status_code=status,
            finish_reason=finish_reason,
            error=error,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=completion_tokens,
            queue_ms=round(timings.queue_s * 1000, 3),
            ttft_ms=None if timings.first_token_s is None else round(timings.first_token_s * 1000, 3),
            total_ms=round(timings.total_s * 1000, 3),
            tokens_per_s=None if speed is None else round(speed, 3),
            sampling=sampling_json(self.params, self.max_tokens),
            input_sha256=input_digest(self.input_value),
            output_sha256=output_digest(text) if status == 200 else None,
            input_content=canonical_json(self.input_value) if self.log_content else None,
            output_content=text if self.log_content else None,
        )
