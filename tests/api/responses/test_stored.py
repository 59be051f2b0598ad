"""Stored responses: GET, DELETE and input_items with the openai SDK, scoped to the key that made them;
`store: false` keeps nothing; keys, permissions and rate limits apply as on chat."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.helpers import TEST_KEY, RunningServer


def new_key(server: RunningServer, **fields: Any) -> openai.OpenAI:
    """A client with a new key of its own (its fields: models, rpm, ...)."""
    made = httpx.post(
        f"{server.base_url}/admin/keys",
        json={"name": "responses", **fields},
        headers={"authorization": f"Bearer {TEST_KEY}"},
        timeout=10,
    )
    return openai.OpenAI(api_key=made.json()["key"], base_url=server.v1, max_retries=0)


def test_get_delete_and_input_items(client: openai.OpenAI) -> None:
    made = client.responses.create(
        model="llama3.2:1b",
        input=[{"role": "user", "content": "One"}, {"role": "user", "content": "Two"}],
        max_output_tokens=4,
    )
    got = client.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == made.output_text
    assert (got.model_extra or {})["request_id"] == (made.model_extra or {})["request_id"]
    items = client.responses.input_items.list(made.id, order="asc")
    assert [item.content[0].text for item in items.data] == ["One", "Two"]  # type: ignore[union-attr]
    assert all(item.id for item in items.data)
    newest = client.responses.input_items.list(made.id, limit=1)
    assert [item.content[0].text for item in newest.data] == ["Two"] and newest.has_more  # type: ignore[union-attr]
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.create(model="llama3.2:1b", previous_response_id=made.id, input="Three")
    assert gone.value.code == "response_not_found" and gone.value.param == "previous_response_id"


def test_another_key_gets_a_404(client: openai.OpenAI, server: RunningServer) -> None:
    made = client.responses.create(model="llama3.2:1b", input="Mine", max_output_tokens=2)
    other = new_key(server)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(made.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="llama3.2:1b", previous_response_id=made.id, input="Yours?")
    assert client.responses.retrieve(made.id).id == made.id  # still there for its own key


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    made = client.responses.create(model="llama3.2:1b", input="Forget me", store=False, max_output_tokens=2)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="llama3.2:1b", previous_response_id=made.id, input="Again")


def test_the_record_holds_the_request_and_its_receipt(client: openai.OpenAI, server: RunningServer) -> None:
    made = client.responses.create(model="llama3.2:1b", input="Record me", max_output_tokens=2)
    request_id = (made.model_extra or {})["request_id"]
    record = httpx.get(
        f"{server.v1}/requests/{request_id}", headers={"authorization": f"Bearer {TEST_KEY}"}, timeout=10
    ).json()
    assert record["request_id"] == request_id and record["status"] == 200 and record["receipt"]


def test_keys_permissions_and_limits_apply(server: RunningServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-pnv-nope", base_url=server.v1, max_retries=0).responses.create(
            model="llama3.2:1b", input="hi"
        )
    only_3b = new_key(server, models=["llama3.2:3b"])
    with pytest.raises(openai.PermissionDeniedError):
        only_3b.responses.create(model="llama3.2:1b", input="hi", max_output_tokens=2)
    with pytest.raises(openai.NotFoundError) as unknown:
        only_3b.responses.create(model="llama-3.2-3b", input="hi", max_output_tokens=2)
    assert unknown.value.code == "model_not_found"
    one_a_minute = new_key(server, rpm=1)
    one_a_minute.responses.create(model="llama3.2:1b", input="hi", max_output_tokens=2)
    with pytest.raises(openai.RateLimitError):
        one_a_minute.responses.create(model="llama3.2:1b", input="hi", max_output_tokens=2)
