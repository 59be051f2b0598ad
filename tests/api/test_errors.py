"""Every error of the contract, with its exact status and body, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.helpers import AUTH, RunningServer

CHAT = "/chat/completions"


def post(server: RunningServer, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.v1}{path}", json=body, headers=AUTH, timeout=60, **kwargs)


def detail(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"detail"}
    return list(response.json()["detail"])


def test_missing_model_is_the_reference_422(server: RunningServer) -> None:
    response = post(server, CHAT, {"messages": [{"role": "user", "content": "hi"}]})
    assert response.json() == {
        "detail": [{"loc": ["body", "model"], "msg": "field required", "type": "value_error.missing"}]
    }


def test_one_entry_per_problem(server: RunningServer) -> None:
    entries = detail(post(server, CHAT, {"messages": [{"content": "hi"}], "temperature": 3}))
    by_loc = {tuple(e["loc"]): e for e in entries}
    assert by_loc[("body", "model")]["type"] == "value_error.missing"
    assert by_loc[("body", "messages", 0, "role")] == {
        "loc": ["body", "messages", 0, "role"],
        "msg": "field required",
        "type": "value_error.missing",
    }
    assert by_loc[("body", "temperature")] == {
        "loc": ["body", "temperature"],
        "msg": "ensure this value is less than or equal to 2",
        "type": "value_error.number.not_le",
    }
    assert len(entries) == 3


def test_message_without_content(server: RunningServer) -> None:
    entries = detail(post(server, CHAT, {"model": "llama3.2:1b", "messages": [{"role": "user"}]}))
    assert entries == [
        {"loc": ["body", "messages", 0, "content"], "msg": "field required", "type": "value_error.missing"}
    ]


@pytest.mark.parametrize(
    ("field", "value", "msg", "type_"),
    [
        ("temperature", -0.1, "ensure this value is greater than or equal to 0", "value_error.number.not_ge"),
        ("top_p", 1.5, "ensure this value is less than or equal to 1", "value_error.number.not_le"),
        ("max_tokens", 0, "ensure this value is greater than or equal to 1", "value_error.number.not_ge"),
        ("temperature", "hot", "value is not a valid float", "type_error.float"),
        ("max_tokens", "ten", "value is not a valid integer", "type_error.integer"),
        ("max_tokens", 2.5, "value is not a valid integer", "type_error.integer"),
        ("stream", "yes", "value is not a valid boolean", "type_error.bool"),
        ("presence_penalty", 2.5, "ensure this value is less than or equal to 2", "value_error.number.not_le"),
        ("n", 2, "only n=1 is supported; send one request per completion", "value_error.const"),
        ("stop", ["a", "b", "c", "d", "e"], "ensure this value has at most 4 items", "value_error.list.max_items"),
        ("messages", [], "ensure this value has at least 1 items", "value_error.list.min_items"),
        ("messages", "hi", "value is not a valid list", "type_error.list"),
    ],
)
def test_range_and_type_errors(server: RunningServer, field: str, value: Any, msg: str, type_: str) -> None:
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], field: value}
    assert detail(post(server, CHAT, body)) == [{"loc": ["body", field], "msg": msg, "type": type_}]


def test_bad_role(server: RunningServer) -> None:
    entries = detail(post(server, CHAT, {"model": "llama3.2:1b", "messages": [{"role": "wizard", "content": "x"}]}))
    assert entries[0]["loc"] == ["body", "messages", 0, "role"]
    assert entries[0]["type"] == "value_error.const"


def test_body_that_is_not_an_object(server: RunningServer) -> None:
    entries = detail(post(server, CHAT, ["not", "an", "object"]))
    assert entries == [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]


def test_422_raises_unprocessable_entity_in_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "x"}], temperature=5)
    assert caught.value.status_code == 422


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe"])
def test_body_that_is_not_json_is_400(server: RunningServer, raw: bytes) -> None:
    response = httpx.post(
        f"{server.v1}{CHAT}", content=raw, headers={**AUTH, "content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_json"
    assert "JSON" in error["message"]
    assert "request_id" not in response.json()


def test_unknown_model_suggests_the_right_id(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="llama-3.2-3b", messages=[{"role": "user", "content": "hi"}])
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_not_found"
    assert body["param"] == "model"
    assert body["type"] == "invalid_request_error"
    assert "`llama3.2:3b`" in body["message"]
    assert "llama3.2:1b, llama3.2:3b" in body["message"]


def test_unknown_model_without_near_miss(server: RunningServer) -> None:
    response = post(server, "/completions", {"model": "gpt-4o", "prompt": "x"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and "Did you mean" not in error["message"]


def test_retrieve_unknown_model(server: RunningServer) -> None:
    response = httpx.get(f"{server.v1}/models/llama3.2:70b", headers=AUTH, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_context_length_exceeded_before_any_work(server: RunningServer) -> None:
    # the session server's models have n_ctx 512
    response = post(
        server, CHAT, {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 600}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error == {
        "message": error["message"],
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    assert "512" in error["message"]


def test_prompt_longer_than_context(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="llama3.2:1b", prompt="word " * 2000, max_tokens=1)
    assert caught.value.code == "context_length_exceeded"


def test_unknown_route_and_trailing_slash(server: RunningServer) -> None:
    missing = httpx.get(f"{server.v1}/nothing-here", headers=AUTH, timeout=10)
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
    slashed = httpx.get(f"{server.v1}/models/", headers=AUTH, timeout=10)
    assert slashed.status_code == 200
    assert slashed.json() == httpx.get(f"{server.v1}/models", headers=AUTH, timeout=10).json()


def test_wrong_method(server: RunningServer) -> None:
    response = httpx.get(f"{server.v1}{CHAT}", headers=AUTH, timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_logit_bias_outside_vocabulary(server: RunningServer) -> None:
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"999999": 5}}
    response = post(server, CHAT, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "logit_bias"


def test_image_parts_are_refused_clearly(server: RunningServer) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    entries = detail(post(server, CHAT, {"model": "llama3.2:1b", "messages": [{"role": "user", "content": [image]}]}))
    assert entries[0]["loc"] == ["body", "messages", 0, "content"]
    assert "text content parts" in entries[0]["msg"]


def test_server_survives_bad_requests(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="llama3.2:1b", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert out.usage is not None and out.usage.prompt_tokens > 0


@pytest.mark.parametrize("token", ["²", "1" * 5000, "-1", " 7", "1e3"])
def test_logit_bias_keys_must_be_plain_token_ids(server: RunningServer, token: str) -> None:
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "x"}], "logit_bias": {token: 1}}
    answer = post(server, "/chat/completions", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "logit_bias"]


def test_seed_beyond_64_bits_is_422(server: RunningServer) -> None:
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "x"}], "seed": 2**64}
    answer = post(server, "/chat/completions", body)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "seed"]
