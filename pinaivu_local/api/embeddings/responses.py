"""The answers of /v1/embeddings (OpenAI's list of embeddings) and /v1/rerank (Jina's and Cohere's results)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from pinaivu_local.api.flow.embedding import EmbeddingResult


def embeddings_body(result: EmbeddingResult, model: str, encoding_format: str) -> dict[str, Any]:
    """OpenAI's embeddings list, plus our request_id; base64 is each vector's float32 little-endian bytes."""
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(vector, encoding_format)}
        for i, vector in enumerate(result.vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        "request_id": result.request_id,
    }


def rerank_body(
    result: EmbeddingResult, model: str, documents: list[str], top_n: int | None, return_documents: bool
) -> dict[str, Any]:
    """The results, best first (ties in document order), each with its index and relevance_score."""
    scores = [float(v[0]) for v in result.vectors]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:top_n]
    results: list[dict[str, Any]] = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if return_documents:
            item["document"] = {"text": documents[i]}
        results.append(item)
    return {
        "object": "list",
        "model": model,
        "results": results,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        "request_id": result.request_id,
    }


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]
