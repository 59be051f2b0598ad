"""Stored responses on Postgres: two servers on one database store, get, continue and delete each
other's responses, scoped to the key that made them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import AUTH, TEST_KEY, RunningServer, TinyModels, write_catalog


@pytest.fixture
def servers(
    server_factory: Callable[..., RunningServer],
    tiny_models: TinyModels,
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
) -> tuple[RunningServer, RunningServer]:
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 1024}})
    env = {"PINAIVU_DATABASE_URL": postgres_url, "PINAIVU_REDIS_URL": redis_url}
    first = server_factory("--models-file", str(catalog), env=env)
    return first, server_factory("--models-file", str(catalog), env=env)


def client(server: RunningServer, key: str = TEST_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=server.v1, max_retries=0)


def test_store_get_and_continue_across_servers(servers: tuple[RunningServer, RunningServer]) -> None:
    a, b = (client(server) for server in servers)
    first = a.responses.create(model="llama3.2:1b", input="One", max_output_tokens=4)
    got = b.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text and got.status == first.status

    # Each turn continues from the last, on the other server: the model sees every earlier item.
    second = b.responses.create(model="llama3.2:1b", input="Two", previous_response_id=first.id, max_output_tokens=4)
    third = a.responses.create(model="llama3.2:1b", input="Three", previous_response_id=second.id, max_output_tokens=4)
    assert first.usage and second.usage and third.usage
    assert first.usage.input_tokens < second.usage.input_tokens < third.usage.input_tokens
    assert b.responses.retrieve(third.id).previous_response_id == second.id
    items = b.responses.input_items.list(third.id, order="asc")
    assert [item.content[0].text for item in items.data] == ["Three"]  # type: ignore[union-attr,index]

    # Another key sees none of them, on either server.
    made = httpx.post(f"{servers[0].base_url}/admin/keys", json={"name": "other"}, headers=AUTH, timeout=10)
    other = client(servers[1], made.json()["key"])
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="llama3.2:1b", input="x", previous_response_id=first.id, max_output_tokens=2)

    # Deleted on one server: gone on the other, and so is the chain through it.
    a.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.create(model="llama3.2:1b", input="Four", previous_response_id=third.id, max_output_tokens=2)
    assert b.responses.retrieve(first.id).id == first.id
