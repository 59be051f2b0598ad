"""POST /v1/embeddings and POST /v1/rerank."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from pinaivu_local.api.embeddings.protocol import EmbeddingsRequest, RerankRequest
from pinaivu_local.api.embeddings.responses import embeddings_body, rerank_body
from pinaivu_local.api.flow.embedding import EmbeddingResult, Embeddings
from pinaivu_local.api.http.context import context_of
from pinaivu_local.api.http.openapi import error_responses, json_body
from pinaivu_local.api.http.validation import in_proportion, read_body
from pinaivu_local.wire import RECEIPT_HEADER


@post(
    "/embeddings",
    status_code=200,
    summary="Create embeddings",
    operation_class=json_body(EmbeddingsRequest),
    responses=error_responses(400, 401, 403, 404, 408, 422, 429, 500, 503),
)
async def create_embeddings(
    request: Request[Any, Any, Any], embeddings: NamedDependency[Embeddings]
) -> Response[dict[str, Any]]:
    """One vector per input, L2-normalized, as floats or base64."""
    context = context_of(request.scope)
    principal = context.caller()
    admission = await embeddings.take_request(principal)  # counted before parsing what may be megabytes
    body = await read_body(request, EmbeddingsRequest)
    sent = await request.body()
    asked = replace(await in_proportion(len(sent), body.embedding_request), sent=sent)
    context.model_id = embeddings.resolve(asked.model)
    result = await embeddings.run(principal, asked, admission)
    context.record = result.record  # the access log's request_id and tokens
    content = result.node_body or embeddings_body(result, context.model_id, body.encoding_format)
    return Response(content, headers=_headers(result))


@post(
    "/rerank",
    status_code=200,
    summary="Rerank documents against a query",
    operation_class=json_body(RerankRequest),
    responses=error_responses(400, 401, 403, 404, 408, 422, 429, 500, 503),
)
async def rerank(request: Request[Any, Any, Any], embeddings: NamedDependency[Embeddings]) -> Response[dict[str, Any]]:
    """Each document's relevance to the query, best first (a rerank model's classification head)."""
    context = context_of(request.scope)
    principal = context.caller()
    admission = await embeddings.take_request(principal)
    body = await read_body(request, RerankRequest)
    asked = replace(body.embedding_request(), sent=await request.body())
    context.model_id = embeddings.resolve(asked.model)
    result = await embeddings.run(principal, asked, admission)
    context.record = result.record
    content = result.node_body or rerank_body(
        result, context.model_id, body.documents, body.top_n, body.return_documents
    )
    return Response(content, headers=_headers(result))


def _headers(result: EmbeddingResult) -> dict[str, str]:
    headers = {"x-request-id": result.request_id}
    if result.signed is not None:
        headers[RECEIPT_HEADER] = result.signed.header_value()
    return headers
