"""The OpenAPI document describes request bodies as the server validates them, route by route.

Each case is a body next to a route's smallest good one: the published schema and the server must
agree on it, the schema by JSON Schema validation, the server by answering or refusing (400/422).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from litestar import Litestar
from litestar.testing import TestClient

MODEL = "llama3.2:1b"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
TEXT = {"model": MODEL, "prompt": "Hi", "max_tokens": 1}
MESSAGE = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
WEATHER = {"name": "w", "input_schema": {"type": "object", "properties": {}}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
FLAT_TOOL = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
JSON_SCHEMA = {"type": "json_schema", "name": "s", "schema": {"type": "object"}}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
# JSON Schema counts 1.0 as an integer; the server parses JSON strictly (as OpenAI does) and does not.
_STRICT = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
)
Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_STRICT)

# (route, body, whether it is accepted): body fields are laid over the route's smallest good body.
CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("chat", {}, True),
    ("chat", {"surprise": 1}, False),
    ("chat", {"model": ""}, False),
    ("chat", {"messages": []}, False),
    ("chat", {"n": 1}, True),
    ("chat", {"n": 2}, False),
    ("chat", {"max_tokens": 0}, False),
    ("chat", {"temperature": 2.5}, False),
    ("chat", {"seed": 1.0}, False),
    ("chat", {"stop": "x"}, True),
    ("chat", {"stop": ["a", "b", "c", "d"]}, True),
    ("chat", {"stop": ["a", "b", "c", "d", "e"]}, False),
    ("chat", {"stop": [1]}, False),
    ("chat", {"logit_bias": {"12": -100}}, True),
    ("chat", {"logit_bias": {"x": 1}}, False),
    ("chat", {"logit_bias": {"1234567890": 1}}, False),
    ("chat", {"logit_bias": {"12": 101}}, False),
    ("chat", {"functions": []}, True),
    ("chat", {"functions": [{"name": "f"}]}, False),
    ("chat", {"function_call": "auto"}, True),
    ("chat", {"function_call": {}}, True),
    ("chat", {"function_call": {"name": "f"}}, False),
    ("chat", {"modalities": ["text"]}, True),
    ("chat", {"modalities": ["text", "audio"]}, False),
    ("chat", {"audio": None}, True),
    ("chat", {"audio": {"voice": "alloy"}}, False),
    ("chat", {"reasoning_effort": "low"}, False),
    ("chat", {"service_tier": "auto"}, True),
    ("chat", {"service_tier": "cheapest"}, False),
    ("chat", {"logprobs": True, "top_logprobs": 2}, True),
    ("chat", {"top_logprobs": 2}, False),
    ("chat", {"top_logprobs": 0}, True),
    ("chat", {"tools": [TOOL]}, True),
    ("chat", {"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, False),
    ("chat", {"tools": [{**TOOL, "extra": 1}]}, False),
    ("chat", {"tool_choice": "required"}, False),
    ("chat", {"tool_choice": "auto"}, True),
    ("chat", {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}}}, True),
    ("chat", {"tool_choice": {"type": "function", "function": {"name": "f"}}}, False),
    ("chat", {"response_format": {"type": "json_object"}}, True),
    ("chat", {"response_format": {"type": "xml"}}, False),
    ("chat", {"tools": [TOOL], "response_format": {"type": "json_object"}}, False),
    ("chat", {"tools": [TOOL], "tool_choice": "none", "response_format": {"type": "json_object"}}, True),
    ("chat", {"tools": [TOOL], "response_format": {"type": "text"}}, True),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}, True),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, False),
    ("chat", {"messages": [{"role": "user", "content": 3}]}, False),
    ("chat", {"messages": [{"role": "user"}]}, False),
    ("chat", {"messages": [{"role": "robot", "content": "Hi"}]}, False),
    ("chat", {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "tool_calls": [CALL]}]}, True),
    ("chat", {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "tool_calls": []}]}, False),
    ("chat", {"messages": [{"role": "user", "content": "Hi", "annotations": [{"x": 1}]}]}, False),
    ("chat", {"messages": [{"role": "user", "content": "Hi", "audio": {}}]}, True),
    ("text", {}, True),
    ("text", {"prompt": [1, 2, 3]}, True),
    ("text", {"prompt": ["Hi"]}, True),
    ("text", {"prompt": [[1, 2]]}, True),
    ("text", {"prompt": ["Hi", "there"]}, False),
    ("text", {"prompt": []}, False),
    ("text", {"prompt": [True]}, False),
    ("text", {"prompt": None}, False),
    ("text", {"echo": False}, True),
    ("text", {"echo": True}, False),
    ("text", {"suffix": ""}, True),
    ("text", {"suffix": "end"}, False),
    ("text", {"best_of": 1}, True),
    ("text", {"best_of": 3}, False),
    ("text", {"logprobs": 5}, True),
    ("text", {"logprobs": 6}, False),
    ("text", {"messages": []}, False),
    ("verify", {}, True),
    ("verify", {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}, True),
    ("verify", {"messages": [{"role": "user", "content": 3}]}, False),
    ("verify", {"prompt": [1.5]}, False),
    ("verify", {"output": None}, False),
    ("verify", {"tool_choice": "required"}, False),
    ("verify", {"tools": [TOOL], "response_format": {"type": "json_object"}}, False),
    ("verify", {"surprise": 1}, False),
    ("receipt", {}, True),
    ("receipt", {"signature": 1}, False),
    ("receipt", {"surprise": 1}, False),
    ("new key", {}, True),
    ("new key", {"expires_in": "30d"}, True),
    ("new key", {"expires_in": "90m"}, True),
    ("new key", {"expires_in": "0d"}, False),
    ("new key", {"expires_in": "30y"}, False),
    ("new key", {"name": ""}, False),
    ("new key", {"rpm": 0}, False),
    ("new key", {"models": [MODEL]}, True),
    ("new key", {"admin": "yes"}, False),
    ("key change", {}, True),
    ("key change", {"name": "renamed"}, True),
    ("key change", {"name": None}, False),
    ("key change", {"rpm": None}, True),
    ("key change", {"admin": True}, False),
    ("embeddings", {}, True),
    ("embeddings", {"input": ["a", "b"]}, True),
    ("embeddings", {"input": [1, 2, 3]}, True),
    ("embeddings", {"input": [[1, 2], [3]]}, True),
    ("embeddings", {"input": ["a", 1]}, False),
    ("embeddings", {"input": 3}, False),
    ("embeddings", {"encoding_format": "base64", "user": "u"}, True),
    ("embeddings", {"encoding_format": "binary"}, False),
    ("embeddings", {"dimensions": 0}, False),
    ("embeddings", {"surprise": 1}, False),
    ("rerank", {}, True),
    ("rerank", {"top_n": 1, "return_documents": False}, True),
    ("rerank", {"top_n": 0}, False),
    ("rerank", {"documents": []}, False),
    ("rerank", {"documents": [1]}, False),
    ("rerank", {"query": ""}, False),
    ("rerank", {"surprise": 1}, False),
    ("messages", {}, True),
    ("messages", {"surprise": 1}, False),
    ("messages", {"max_tokens": None}, False),
    ("messages", {"messages": []}, False),
    ("messages", {"temperature": 1.5}, False),
    ("messages", {"system": "Be brief."}, True),
    ("messages", {"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]}, True),
    ("messages", {"system": [{"type": "image"}]}, False),
    ("messages", {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}, True),
    ("messages", {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, False),
    ("messages", {"messages": [{"role": "tool", "content": "Hi"}]}, False),
    ("messages", {"tools": [WEATHER], "tool_choice": {"type": "any"}}, True),
    ("messages", {"tools": [WEATHER], "tool_choice": {"type": "required"}}, False),
    ("messages", {"tools": [{"name": "w"}]}, False),
    ("messages", {"stop_sequences": ["x"], "top_k": 5, "metadata": {"user_id": "u"}}, True),
    ("messages", {"service_tier": "auto", "cache_control": {"type": "ephemeral"}}, True),
    ("responses", {}, True),
    ("responses", {"surprise": 1}, False),
    ("responses", {"model": ""}, False),
    ("responses", {"input": 3}, False),
    ("responses", {"input": []}, False),
    ("responses", {"input": [{"role": "user", "content": "Hi"}]}, True),
    (
        "responses",
        {"input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]},
        True,
    ),
    ("responses", {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, False),
    ("responses", {"input": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}, False),
    ("responses", {"input": [{"role": "user", "content": [{"type": {}, "text": "Hi"}]}]}, False),
    (
        "responses",
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi", "annotations": []}]}]},
        True,
    ),
    (
        "responses",
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi", "annotations": [1]}]}]},
        False,
    ),
    ("responses", {"input": [{"type": "item_reference", "id": "msg_1"}]}, False),
    ("responses", {"input": [{"role": "robot", "content": "Hi"}]}, False),
    ("responses", {"input": [{"role": "user"}]}, False),
    (
        "responses",
        {
            "input": [
                {"role": "user", "content": "Hi"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "done"},
            ],
        },
        True,
    ),
    ("responses", {"input": [{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}]}, False),
    ("responses", {"instructions": "Be brief.", "metadata": {"k": "v"}, "user": "u", "store": False}, True),
    ("responses", {"metadata": {"k": 1}}, False),
    ("responses", {"max_output_tokens": 0}, False),
    ("responses", {"temperature": 2.5}, False),
    ("responses", {"top_p": 1.5}, False),
    ("responses", {"tools": [FLAT_TOOL], "parallel_tool_calls": False}, True),
    ("responses", {"tools": [{"type": "web_search"}]}, False),
    ("responses", {"tools": [{**FLAT_TOOL, "name": "no spaces"}]}, False),
    ("responses", {"tools": [{**FLAT_TOOL, "extra": 1}]}, False),
    ("responses", {"tool_choice": "auto"}, True),
    ("responses", {"tool_choice": "required"}, False),
    ("responses", {"tools": [FLAT_TOOL], "tool_choice": {"type": "function", "name": "f"}}, True),
    ("responses", {"tool_choice": {"type": "function", "name": "f"}}, False),
    ("responses", {"tools": [FLAT_TOOL], "tool_choice": {"type": "web_search_preview"}}, False),
    ("responses", {"text": {"format": {"type": "json_object"}}}, True),
    ("responses", {"text": {"format": JSON_SCHEMA}}, True),
    ("responses", {"text": {"format": {"type": "xml"}}}, False),
    ("responses", {"text": {"format": {"type": "text"}}, "tools": [FLAT_TOOL]}, True),
    ("responses", {"text": {"format": {"type": "json_object"}}, "tools": [FLAT_TOOL]}, False),
    ("responses", {"text": {"format": JSON_SCHEMA}, "tools": [FLAT_TOOL], "tool_choice": "none"}, True),
    ("responses", {"text": {"verbosity": "high"}}, False),
    ("responses", {"truncation": "disabled"}, True),
    ("responses", {"truncation": "auto"}, False),
    ("responses", {"reasoning": None, "include": []}, True),
    ("responses", {"reasoning": {"effort": "low"}}, False),
    ("responses", {"include": ["message.output_text.logprobs"]}, False),
    ("responses", {"background": True}, False),
    ("responses", {"service_tier": "auto", "prompt_cache_key": "k"}, True),
    ("responses", {"max_tool_calls": 0}, False),
    ("count tokens", {}, True),
    ("count tokens", {"messages": []}, False),
    ("count tokens", {"surprise": 1}, False),
]


@pytest.fixture
def served(app_client: TestClient[Litestar]) -> Iterator[dict[str, tuple[str, str, dict[str, Any]]]]:
    """Per route name: method, path and smallest good body (a request, a receipt and a key to use)."""
    answer = app_client.post("/v1/chat/completions", json=CHAT)
    request_id, receipt = answer.json()["request_id"], json.loads(answer.headers["x-pinaivu-receipt"])
    deadline = time.monotonic() + 10  # the log writes its records in the background
    while app_client.get(f"/v1/requests/{request_id}").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    key_id = app_client.post("/admin/keys", json={"name": "changed"}).json()["id"]
    yield {
        "chat": ("POST", "/v1/chat/completions", CHAT),
        "text": ("POST", "/v1/completions", TEXT),
        "verify": (
            "POST",
            f"/v1/requests/{request_id}/verify",
            {"output": "x", "messages": CHAT["messages"], "replay": False},
        ),
        "receipt": ("POST", "/v1/receipts/verify", receipt),
        "new key": ("POST", "/admin/keys", {"name": "new"}),
        "key change": ("PATCH", f"/admin/keys/{key_id}", {}),
        "embeddings": ("POST", "/v1/embeddings", {"model": MODEL, "input": "Hi"}),
        "rerank": ("POST", "/v1/rerank", {"model": "test-rerank", "query": "q", "documents": ["d"]}),
        "messages": ("POST", "/v1/messages", MESSAGE),
        "responses": ("POST", "/v1/responses", {"model": MODEL, "input": "Hi", "max_output_tokens": 1}),
        "count tokens": ("POST", "/v1/messages/count_tokens", {"model": MODEL, "messages": MESSAGE["messages"]}),
    }


def body_schemas(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each operation's published JSON body schema, by (METHOD, path template)."""
    return {
        (method.upper(), path): operation["requestBody"]["content"]["application/json"]["schema"]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }


def template_of(path: str, templates: list[str]) -> str:
    """The path template `path` fills in."""
    parts = path.split("/")
    for template in templates:
        pattern = template.split("/")
        if len(pattern) == len(parts) and all(p == t or t.startswith("{") for p, t in zip(parts, pattern, strict=True)):
            return template
    raise AssertionError(f"no template for {path}")


def test_every_route_with_a_body_is_covered(
    app_client: TestClient[Litestar], served: dict[str, tuple[str, str, dict[str, Any]]]
) -> None:
    schemas = body_schemas(app_client.get("/docs/openapi.json").json())
    templates = [path for _, path in schemas]
    covered = {(method, template_of(path, templates)) for method, path, _ in served.values()}
    assert covered == set(schemas)
    assert {route for route, _, _ in CASES} == set(served)


def test_the_document_and_the_server_agree_on_each_body(
    app_client: TestClient[Litestar], served: dict[str, tuple[str, str, dict[str, Any]]]
) -> None:
    schemas = body_schemas(app_client.get("/docs/openapi.json").json())
    templates = [template for _, template in schemas]
    disagreements = []
    for route, change, accepted in CASES:
        method, path, good = served[route]
        body = {**good, **change}
        documented = Validator(schemas[method, template_of(path, templates)]).is_valid(body)
        answer = app_client.request(method, path, json=body)
        served_ok = answer.status_code not in (400, 422)
        if documented is not accepted or served_ok is not accepted:
            disagreements.append((route, change, f"expected {accepted}, document {documented}", answer.text[:300]))
    assert disagreements == [], "\n".join(map(str, disagreements))
