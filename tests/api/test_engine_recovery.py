"""/health and /metrics in-process: an engine failure answered and shown, paths only for admins."""

from __future__ import annotations

import time
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from pinaivu_local.api.services import services_of
from pinaivu_local.engine.model_pool import ModelPool
from tests.faults import fail_next_admission
from tests.helpers import NO_EOG

CHAT: dict[str, Any] = {
    "model": "llama3.2:1b",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 4,
    "temperature": 0,
    "logit_bias": NO_EOG,
}


def _break_admission_once(client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch) -> None:
    """The next engine step of llama3.2:1b raises outside the decode, as the penalties bug did."""
    pool: ModelPool = services_of(client.app).pool
    error = TypeError("this function takes at least 5 arguments (4 given)")
    fail_next_admission(pool.get("llama3.2:1b"), monkeypatch, error)


def _model(client: TestClient[Litestar], model_id: str) -> dict[str, Any]:
    return next(m for m in client.get("/health").json()["models"] if m["id"] == model_id)


def test_engine_failure_answers_503_then_serves_again(
    app_client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    _break_admission_once(app_client, monkeypatch)
    failed = app_client.post("/v1/chat/completions", json=CHAT)
    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "1"
    assert failed.json()["error"]["code"] == "no_nodes_available"
    assert "restarting" in failed.json()["error"]["message"]

    deadline = time.monotonic() + 10
    while _model(app_client, "llama3.2:1b")["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.05)
    model = _model(app_client, "llama3.2:1b")
    assert (model["failures"], model["restarts"]) == (1, 1)
    assert model["last_failure"].startswith("TypeError")
    assert _model(app_client, "llama3.2:3b")["failures"] == 0  # the other model never noticed

    served = app_client.post("/v1/chat/completions", json=CHAT)
    assert served.status_code == 200 and served.json()["usage"]["completion_tokens"] == 4
    metrics = app_client.get("/metrics").text
    assert 'pinaivu_engine_failures_total{model="llama3.2:1b"} 1.0' in metrics
    assert 'pinaivu_engine_restarts_total{model="llama3.2:1b"} 1.0' in metrics


def test_health_is_degraded_while_an_engine_recovers(
    app_client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pinaivu_local.engine.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "RESTART_BACKOFF_S", (3.0, 3.0))
    _break_admission_once(app_client, monkeypatch)
    assert app_client.post("/v1/chat/completions", json=CHAT).status_code == 503
    health = app_client.get("/health").json()
    assert health["status"] == "degraded"
    model = _model(app_client, "llama3.2:1b")
    assert model["state"] == "recovering" and "TypeError" in model["detail"]
    refused = app_client.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    other = app_client.post("/v1/chat/completions", json={**CHAT, "model": "llama3.2:3b"})
    assert other.status_code == 200


def test_a_request_whose_sampler_cannot_be_built_is_refused_alone(
    app_client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pinaivu_local.engine.sampling as sampling_module

    def wrong_arity(*args: object) -> object:
        raise TypeError("this function takes at least 5 arguments (4 given)")

    monkeypatch.setattr(sampling_module.llama, "llama_sampler_init_penalties", wrong_arity)
    refused = app_client.post("/v1/chat/completions", json={**CHAT, "presence_penalty": 0.5})
    assert refused.status_code == 500
    assert refused.json()["error"]["code"] == "internal_error"
    assert "request_id" not in refused.json()
    model = _model(app_client, "llama3.2:1b")
    assert (model["state"], model["failures"]) == ("ready", 0)
    assert app_client.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_health_shows_file_paths_only_to_an_admin_key(app_client: TestClient[Litestar]) -> None:
    admin = _model(app_client, "llama3.2:1b")
    assert admin["file"].endswith(".gguf") and admin["file"].startswith("/")
    anonymous = app_client.get("/health", headers={"authorization": ""}).json()["models"]
    user = app_client.post("/admin/keys", json={"name": "plain"}).json()["key"]
    plain = app_client.get("/health", headers={"authorization": f"Bearer {user}"}).json()["models"]
    for models in (anonymous, plain):
        assert all("file" not in m for m in models)
        assert admin["file"] not in str(models)
