"""GET /v1/models, GET /v1/models/{id} and GET /health."""

from __future__ import annotations

import httpx
import openai

from tests.helpers import AUTH, RunningServer


def test_list_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["llama3.2:1b", "llama3.2:3b"]


def test_list_shape(server: RunningServer) -> None:
    body = httpx.get(f"{server.v1}/models", headers=AUTH, timeout=10).json()
    assert body["object"] == "list"
    for model in body["data"]:
        assert model["object"] == "model"
        assert model["owned_by"] == "pinaivu-local"
        assert isinstance(model["created"], int)
        assert model["test_model"] is False
        assert (model["kind"], model["capabilities"]) == ("chat", ["chat", "completions", "embeddings"])


def test_retrieve_model(client: openai.OpenAI) -> None:
    model = client.models.retrieve("llama3.2:3b")
    assert model.id == "llama3.2:3b"


def test_health_needs_no_key_and_lists_states(server: RunningServer) -> None:
    body = httpx.get(f"{server.base_url}/health", timeout=10).json()
    assert body["status"] == "ok"
    assert [(m["id"], m["state"]) for m in body["models"]] == [("llama3.2:1b", "ready"), ("llama3.2:3b", "ready")]
