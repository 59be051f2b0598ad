"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from pinaivu_local.api.generation import respond, sampling_params
from pinaivu_local.api.openai_shapes import Completion
from pinaivu_local.api.schemas import ChatCompletionRequest, CompletionRequest
from pinaivu_local.api.validation import parse_body
from pinaivu_local.engine.model_pool import ModelPool


@post("/chat/completions", status_code=200, summary="Create a chat completion")
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    """Answer a conversation, whole or as a stream of chunks."""
    body = parse_body(await request.body(), ChatCompletionRequest)
    pool: ModelPool = request.app.state.pool
    engine = pool.get(body.model)
    params = sampling_params(body, engine)
    prompt = engine.chat_prompt([{"role": m.role, "content": m.text()} for m in body.messages])
    max_tokens = engine.completion_budget(len(prompt), body.token_limit(), "messages")
    completion = Completion("chat", engine.id, include_usage=bool(body.stream) and body.include_usage())
    return await respond(request, engine, prompt, params, max_tokens, completion, bool(body.stream))


@post("/completions", status_code=200, summary="Create a text completion")
async def completions(request: Request[Any, Any, Any]) -> Response[Any]:
    """Continue a prompt, whole or as a stream of chunks."""
    body = parse_body(await request.body(), CompletionRequest)
    pool: ModelPool = request.app.state.pool
    engine = pool.get(body.model)
    params = sampling_params(body, engine)
    prompt = engine.text_prompt(body.prompt) if isinstance(body.prompt, str) else engine.token_prompt(body.prompt)
    max_tokens = engine.completion_budget(len(prompt), body.max_tokens, "prompt")
    completion = Completion("text", engine.id, include_usage=bool(body.stream) and body.include_usage())
    return await respond(request, engine, prompt, params, max_tokens, completion, bool(body.stream))
