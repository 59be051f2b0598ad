"""The request bodies of /v1/embeddings and /v1/rerank, validated as OpenAI (and Jina, Cohere) do."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pinaivu_local.api.flow.embedding import EmbeddingRequest
from pinaivu_local.api.http.validation import StrictBody
from pinaivu_local.errors import InvalidRequest

# OpenAI's limit on the inputs of one request.
MAX_INPUTS = 2048
# Documents one rerank request may score.
MAX_DOCUMENTS = 1024

# One text, several texts, one input as token ids, or several inputs as token ids.
EmbeddingInput = str | list[str] | list[int] | list[list[int]]


class EmbeddingsRequest(StrictBody):
    """POST /v1/embeddings."""

    model: str = Field(min_length=1)
    input: EmbeddingInput = Field(
        description="A string, a list of strings, a list of token ids, or a list of such lists "
        f"(at most {MAX_INPUTS} inputs). Each input is embedded whole: one past the model's limit is a 400."
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="float: lists of numbers; base64: each vector's float32 little-endian bytes."
    )
    dimensions: int | None = Field(
        default=None, ge=1, description="Cut each vector to this many dimensions (models trained for it only)."
    )
    user: str | None = Field(default=None, description="Accepted, as OpenAI does; not used.")

    def embedding_request(self) -> EmbeddingRequest:
        """The flow's request; InvalidRequest (400) for an empty input, as OpenAI answers."""
        texts, tokens = _inputs(self.input)
        return EmbeddingRequest(
            kind="embedding",
            model=self.model,
            texts=texts,
            tokens=tokens,
            dimensions=self.dimensions,
            committed_input=self.input,
            param="input",
        )


class RerankRequest(StrictBody):
    """POST /v1/rerank (also /v1/rerank's Jina and Cohere spelling)."""

    model: str = Field(min_length=1)
    query: str = Field(min_length=1)
    documents: list[str] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(default=None, ge=1, description="Return only the best top_n results.")
    return_documents: bool = Field(default=True, description="Include each document's text in its result.")

    def embedding_request(self) -> EmbeddingRequest:
        """The flow's request: one (query, document) pair per document."""
        return EmbeddingRequest(
            kind="rerank",
            model=self.model,
            texts=list(self.documents),
            query=self.query,
            committed_input={"query": self.query, "documents": self.documents},
            param="documents",
        )


def _inputs(value: Any) -> tuple[list[str] | None, list[list[int]] | None]:
    """(texts, token lists) of an input as sent; InvalidRequest where OpenAI refuses it."""
    if isinstance(value, str):
        value = [value]
    if not value:
        raise InvalidRequest("input must not be an empty list; send at least one input.", param="input")
    if len(value) > MAX_INPUTS and not isinstance(value[0], int):
        raise InvalidRequest(
            f"input has {len(value)} inputs; at most {MAX_INPUTS} may be sent in one request.", param="input"
        )
    if isinstance(value[0], int):
        return None, [list(value)]
    if isinstance(value[0], list):
        return None, [list(v) for v in value]
    for i, text in enumerate(value):
        if not text:
            raise InvalidRequest(f"input[{i}] is an empty string; every input needs some text.", param="input")
    return list(value), None
