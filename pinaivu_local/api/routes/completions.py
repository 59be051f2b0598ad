"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from pinaivu_local.api.generation import serve_generation
from pinaivu_local.api.openapi_body import json_body
from pinaivu_local.api.schemas import ChatCompletionRequest, CompletionRequest, template_messages
from pinaivu_local.api.validation import parse_body
from pinaivu_local.engine.model_pool import ModelEngine


@post(
    "/chat/completions",
    status_code=200,
    summary="Create a chat completion",
    operation_class=json_body(ChatCompletionRequest),
)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    """Answer a conversation, whole or as a stream of chunks."""
    body = parse_body(await request.body(), ChatCompletionRequest)
    messages = template_messages(body.messages)

    def prompt(engine: ModelEngine) -> list[int]:
        return engine.chat_prompt(messages)

    canonical = [m.model_dump(exclude_none=True) for m in body.messages]
    return await serve_generation(request, body, "chat", prompt, body.token_limit(), canonical)


@post("/completions", status_code=200, summary="Create a text completion", operation_class=json_body(CompletionRequest))
async def completions(request: Request[Any, Any, Any]) -> Response[Any]:
    """Continue a prompt, whole or as a stream of chunks."""
    body = parse_body(await request.body(), CompletionRequest)

    def prompt(engine: ModelEngine) -> list[int]:
        if isinstance(body.prompt, str):
            return engine.text_prompt(body.prompt)
        return engine.token_prompt(body.prompt)

    return await serve_generation(request, body, "text", prompt, body.max_tokens, body.prompt)
