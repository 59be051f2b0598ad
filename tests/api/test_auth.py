"""PINAIVU_API_KEY gates /v1: 401 causes with their codes; /health stays open."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import RunningServer, TinyModels, write_catalog

KEY = "sk-pnv-" + "a" * 40


@pytest.fixture
def keyed(server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path) -> RunningServer:
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 256}})
    return server_factory("--models-file", str(catalog), env={"PINAIVU_API_KEY": KEY})


def error_of(server: RunningServer, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    response = httpx.get(f"{server.v1}/models", headers=headers, timeout=10)
    return response.status_code, response.json().get("error")


def test_missing_header(keyed: RunningServer) -> None:
    status, error = error_of(keyed, {})
    assert status == 401
    assert error["code"] == "missing_api_key"
    assert "Authorization: Bearer sk-pnv-" in error["message"]


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (f"Basic {KEY}", "Bearer scheme"),
        ("Bearer sk-openai-123", "must start with `sk-pnv-`"),
        ("Bearer sk-pnv-wrong", "Incorrect API key"),
        (f"Bearer  {KEY}", "whitespace"),
        (f"Bearer {KEY[:20]} {KEY[20:]}", "whitespace"),
    ],
)
def test_invalid_keys(keyed: RunningServer, header: str, needle: str) -> None:
    status, error = error_of(keyed, {"authorization": header})
    assert status == 401
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]
    assert KEY not in error["message"]


def test_sdk_sees_authentication_error_before_validation(keyed: RunningServer) -> None:
    bad = openai.OpenAI(base_url=keyed.v1, api_key="sk-pnv-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        # an invalid body too: authentication is checked first
        bad.chat.completions.create(model="llama3.2:1b", messages=[], temperature=9)


def test_right_key_works_and_health_is_open(keyed: RunningServer) -> None:
    good = openai.OpenAI(base_url=keyed.v1, api_key=KEY, max_retries=0)
    assert [m.id for m in good.models.list()] == ["llama3.2:1b"]
    out = good.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert out.usage is not None and out.usage.completion_tokens > 0
    assert httpx.get(f"{keyed.base_url}/health", timeout=10).status_code == 200
    assert KEY not in keyed.log()
