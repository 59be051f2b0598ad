"""Re-runs a logged deterministic request on the same model and compares the text."""

from __future__ import annotations

from typing import Any

from litestar import Request

from pinaivu_local.api.auth import Principal
from pinaivu_local.api.request_trace import sampling_from_json
from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.errors import ModelNotFound, RateLimited, Unavailable
from pinaivu_local.ratelimit import RateLimiter
from pinaivu_local.requestlog.commitment import first_divergence
from pinaivu_local.requestlog.records import RequestRecord


def is_deterministic(sampling: dict[str, Any]) -> bool:
    """Greedy decoding, or sampling from a fixed seed."""
    return sampling.get("temperature") == 0 or sampling.get("seed") is not None


async def replay(
    request: Request[Any, Any, Any], record: RequestRecord, source: list[dict[str, str]] | str | list[int], output: str
) -> dict[str, Any]:
    """Generate again with the logged sampling; say whether the text reproduces and where not.

    `source` is the chat messages (role and text) of a chat request, else the prompt.
    """
    sampling = record.sampling_params()
    if not is_deterministic(sampling):
        return {"performed": False, "reason": "sampled at temperature > 0 without a seed: not reproducible"}
    pool: ModelPool = request.app.state.pool
    try:
        engine = pool.get(record.model_id)
    except ModelNotFound:
        return {"performed": False, "reason": f"the model {record.model_id} is not active now"}
    model_hash = request.app.state.model_hashes.get(engine.spec.file)
    if record.model_sha256 and model_hash and model_hash != record.model_sha256:
        return {"performed": False, "reason": "the model file changed since the request (its SHA-256 differs)"}
    if isinstance(source, str):
        prompt = engine.text_prompt(source)
    elif record.kind == "chat":
        prompt = engine.chat_prompt(source)  # type: ignore[arg-type]
    else:
        prompt = engine.token_prompt(source)  # type: ignore[arg-type]
    params, budget = sampling_from_json(sampling)
    max_tokens = budget or record.completion_tokens or 1
    principal: Principal = request.state.principal
    limiter: RateLimiter = request.app.state.limiter
    try:  # a replay is inference: it counts against the caller's limits like any request
        reservation = limiter.admit(principal.key_id, principal.limits, len(prompt) + max_tokens)
    except RateLimited as exc:
        return {"performed": False, "reason": exc.message}
    try:
        generation = engine.start(prompt, params, max_tokens)
    except Unavailable as exc:
        reservation.cancel()
        return {"performed": False, "reason": exc.message}
    try:
        replayed = "".join([delta.text async for delta in generation])
    finally:
        generation.close()
        reservation.settle(generation.tokens_used)
    index = first_divergence(output, replayed)
    report: dict[str, Any] = {"performed": True, "reproduced": index is None, "first_divergence": index}
    if index is not None:
        report["expected"] = output[max(0, index - 20) : index + 20]
        report["replayed"] = replayed[max(0, index - 20) : index + 20]
    return report
