"""Re-runs a logged deterministic request on the same model, through the usual flow, and compares the text."""

from __future__ import annotations

from typing import Any

from pinaivu_local.api.flow.inference import CLIENT_CLOSED, Inference
from pinaivu_local.api.flow.request import InferenceRequest, Kind
from pinaivu_local.api.http.context import RequestContext
from pinaivu_local.api.openai.serving import collect
from pinaivu_local.api.openai.structured import OutputStructure
from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.engine.prepared import PromptSource
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.errors import ModelNotFound, PermissionDenied, RateLimited, Unavailable
from pinaivu_local.requestlog.commitment import first_divergence
from pinaivu_local.requestlog.model_hashes import ModelHashes
from pinaivu_local.requestlog.records import RequestRecord

# A record's kind as the flow takes it (a chat's records are "chat").
_KINDS: dict[str, Kind] = {"text": "text", "messages": "messages", "responses": "responses"}

# Refusals a replay reports in its result instead of failing the verification.
_NOT_NOW = (ModelNotFound, PermissionDenied, RateLimited, Unavailable)


class Replayer:
    """Replays for POST /v1/requests/{id}/verify; a replay counts against the caller's limits."""

    def __init__(self, pool: ModelPool, hashes: ModelHashes, inference: Inference, *, fleet: bool = False) -> None:
        self._pool = pool
        self._fleet = fleet  # a gateway: the replay runs on a node holding the same model file, if any
        self._hashes = hashes
        self._inference = inference

    async def replay(
        self,
        context: RequestContext,
        record: RequestRecord,
        source: PromptSource,
        held: Any,
        output: str,
        structure: tuple[OutputStructure, str | None] = (OutputStructure(), None),
        node_messages: Any = None,
    ) -> dict[str, Any]:
        """Generate again with the logged sampling; say whether the text reproduces and where not.

        The replay is inference like any other: recorded (naming `record`), counted, rate-limited.
        `held` is the input as the caller sent it, which matched the commitment; `structure` its tools /
        response_format (as the engine takes them, and their digest), which must match the record's;
        `node_messages` the input as a gateway's nodes take it, where `held` has another API's shape.
        """
        logged = record.sampling_params()
        not_kept = SamplingParams.not_kept(logged)  # stop or logit_bias too large for the record
        if not_kept:
            return {"performed": False, "reason": not_kept}
        params, budget = SamplingParams.from_json(logged)
        if not params.deterministic:
            return {"performed": False, "reason": "sampled at temperature > 0 without a seed: not reproducible"}
        fields, digest = structure
        if logged.get("structure_sha256") != digest:
            return {
                "performed": False,
                "reason": "the request's tools, tool_choice, parallel_tool_calls and response_format (the record keeps "
                "their SHA-256) differ from those sent now: send them as they were sent to replay it",
            }
        changed = self._fleet_cannot(record) if self._fleet else self._model_changed(record)
        if changed:
            return {"performed": False, "reason": changed}
        request = InferenceRequest(
            kind=_KINDS.get(record.kind, "chat"),
            model=record.model_id,
            source=source,
            sampling=params,
            max_tokens=budget or record.completion_tokens or 1,
            committed_input=held,
            node_messages=node_messages,
            model_sha256=record.model_sha256 if self._fleet else None,
            constraint=fields.constraint,
            tool_names=fields.tool_names,
            structure_digest=digest,
        )
        try:
            principal = context.caller()
            admission = await self._inference.take_request(principal)
            run = context.run = await self._inference.start(principal, request, admission, replay_of=record.request_id)
        except _NOT_NOW as exc:
            return {"performed": False, "reason": exc.message}
        try:
            replayed, _, _ = await collect(run)
            await run.recorded()
        finally:
            run.end(CLIENT_CLOSED, error="the replay was interrupted")
        return {**_report(output, replayed), "request_id": run.request_id}

    @staticmethod
    def _fleet_cannot(record: RequestRecord) -> str | None:
        """Why no node can be chosen to replay the record at a gateway, if none can."""
        if record.model_sha256 is None:
            return (
                f"the node that served it ({record.node}) names no model file hash, so no node can be shown "
                "to hold the same model: none is available to replay it"
            )
        return None

    def _model_changed(self, record: RequestRecord) -> str | None:
        """Why the model cannot reproduce the record now, if it cannot."""
        try:
            engine = self._pool.get(record.model_id)
        except ModelNotFound:
            return f"the model {record.model_id} is not active now"
        model_hash = self._hashes.get(engine.spec.file)
        if record.model_sha256 and model_hash and model_hash != record.model_sha256:
            return "the model file changed since the request (its SHA-256 differs)"
        return None


def _report(expected: str, replayed: str) -> dict[str, Any]:
    index = first_divergence(expected, replayed)
    report: dict[str, Any] = {"performed": True, "reproduced": index is None, "first_divergence": index}
    if index is not None:
        report["expected"] = expected[max(0, index - 20) : index + 20]
        report["replayed"] = replayed[max(0, index - 20) : index + 20]
    return report
