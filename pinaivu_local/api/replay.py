"""Re-runs a logged deterministic request on the same model and compares the text."""

from __future__ import annotations

from typing import Any

from litestar import Request

from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.errors import ModelNotFound
from pinaivu_local.requestlog.commitment import first_divergence
from pinaivu_local.requestlog.records import RequestRecord


def is_deterministic(sampling: dict[str, Any]) -> bool:
    """Greedy decoding, or sampling from a fixed seed."""
    return sampling.get("temperature") == 0 or sampling.get("seed") is not None


async def replay(request: Request[Any, Any, Any], record: RequestRecord, held: Any, output: str) -> dict[str, Any]:
    """Generate again with the logged sampling; say whether the text reproduces and where not."""
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
    if record.kind == "chat":
        prompt = engine.chat_prompt([{"role": m["role"], "content": _text(m.get("content"))} for m in held])
    else:
        prompt = engine.text_prompt(held) if isinstance(held, str) else engine.token_prompt(held)
    params = SamplingParams(
        temperature=sampling.get("temperature", 1.0),
        top_p=sampling.get("top_p", 1.0),
        seed=sampling.get("seed"),
        stop=tuple(sampling.get("stop", ())),
        presence_penalty=sampling.get("presence_penalty", 0.0),
        frequency_penalty=sampling.get("frequency_penalty", 0.0),
        logit_bias={int(k): v for k, v in sampling.get("logit_bias", {}).items()},
        ignore_eos=sampling.get("ignore_eos", False),
    )
    generation = engine.start(prompt, params, int(sampling.get("max_tokens", record.completion_tokens or 1)))
    parts = [delta.text async for delta in generation]
    replayed = "".join(parts)
    index = first_divergence(output, replayed)
    report: dict[str, Any] = {"performed": True, "reproduced": index is None, "first_divergence": index}
    if index is not None:
        report["expected"] = output[max(0, index - 20) : index + 20]
        report["replayed"] = replayed[max(0, index - 20) : index + 20]
    return report


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content or ""
