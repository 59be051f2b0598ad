"""Keys end to end: admin API, CLI against a running server, 401/403 causes, restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import AUTH, TEST_KEY, RunningServer


@pytest.fixture
def catalog(two_models: Path) -> Path:
    return two_models


@pytest.fixture
def srv(server_factory: Callable[..., RunningServer], catalog: Path) -> RunningServer:
    return server_factory("--models-file", str(catalog))


def admin(server: RunningServer, method: str, path: str, body: Any = None, key: str = TEST_KEY) -> httpx.Response:
    return httpx.request(
        method, f"{server.base_url}/admin{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pinaivu_local", "keys", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def chat(key: str, server: RunningServer, model: str = "llama3.2:1b") -> Any:
    client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_admin_api_lifecycle(srv: RunningServer) -> None:
    created = admin(srv, "POST", "/keys", {"name": "ci", "models": ["llama3.2:1b"], "rpm": 30, "expires_in": "30d"})
    assert created.status_code == 201, created.text
    body = created.json()
    key, key_id = body["key"], body["id"]
    assert key.startswith("sk-pnv-") and body["models"] == ["llama3.2:1b"] and body["rpm"] == 30
    assert body["expires_at"] and body["state"] == "active"
    assert chat(key, srv).choices

    listed = admin(srv, "GET", "/keys").json()["data"]
    assert key_id in [k["id"] for k in listed] and all("key" not in k for k in listed)
    assert admin(srv, "GET", f"/keys/{key_id}").json()["name"] == "ci"

    patched = admin(srv, "PATCH", f"/keys/{key_id}", {"rpm": 5, "models": []})
    assert patched.status_code == 200 and patched.json()["rpm"] == 5 and patched.json()["models"] == []

    rotated = admin(srv, "POST", f"/keys/{key_id}/rotate")
    assert rotated.status_code == 201 and rotated.json()["replaces"] == key_id
    new_key = rotated.json()["key"]
    with pytest.raises(openai.AuthenticationError) as old:
        chat(key, srv)
    assert old.value.code == "revoked_api_key"
    assert chat(new_key, srv).choices

    revoked = admin(srv, "DELETE", f"/keys/{rotated.json()['id']}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    with pytest.raises(openai.AuthenticationError):
        chat(new_key, srv)
    assert new_key not in srv.log() and key not in srv.log()


def test_admin_api_errors(srv: RunningServer) -> None:
    assert admin(srv, "GET", "/keys/key_nope").json()["error"]["code"] == "key_not_found"
    bad = admin(srv, "POST", "/keys", {"name": "", "rpm": 0, "expires_in": "soon", "models": ["gpt-4"]})
    assert bad.status_code == 422
    locs = {tuple(d["loc"]) for d in bad.json()["detail"]}
    assert {("body", "name"), ("body", "rpm"), ("body", "expires_in")} <= locs
    cleared_name = admin(srv, "PATCH", f"/keys/{admin(srv, 'GET', '/keys').json()['data'][0]['id']}", {"name": None})
    assert cleared_name.status_code == 422 and cleared_name.json()["detail"][0]["loc"] == ["body", "name"]
    assert admin(srv, "PATCH", "/keys/key_nope", {"rpm": 3}).status_code == 404
    unknown_model = admin(srv, "POST", "/keys", {"name": "x", "models": ["gpt-4"]})
    assert unknown_model.status_code == 422 and "gpt-4" in unknown_model.json()["detail"][0]["msg"]
    assert admin(srv, "GET", "/keys", key="sk-pnv-unknown-key-000000000000").status_code == 401


def test_non_admin_key_gets_403_on_admin(srv: RunningServer) -> None:
    key = admin(srv, "POST", "/keys", {"name": "user"}).json()["key"]
    response = admin(srv, "GET", "/keys", key=key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_model_outside_the_key_list_is_403_unknown_stays_404(srv: RunningServer) -> None:
    key = admin(srv, "POST", "/keys", {"name": "small-only", "models": ["llama3.2:1b"]}).json()["key"]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(key, srv, "llama3.2:3b")
    assert denied.value.code == "permission_denied" and "llama3.2:1b" in denied.value.message
    with pytest.raises(openai.NotFoundError):
        chat(key, srv, "llama3.2:70b")


def test_cli_revocation_is_seen_by_the_running_server(srv: RunningServer) -> None:
    made = cli(srv, "create", "--name", "from-cli", "--models", "llama3.2:1b,llama3.2:3b", "--rpm", "9", "--json")
    assert made.returncode == 0, made.stderr
    issued = json.loads(made.stdout)
    assert {"id", "key", "name", "expires_at"} <= set(issued)
    assert chat(issued["key"], srv).choices
    listed = cli(srv, "list", "--json")
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert rows[issued["id"]]["rpm"] == 9 and issued["key"] not in listed.stdout
    assert cli(srv, "revoke", issued["id"]).returncode == 0
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(issued["key"], srv)
    assert caught.value.code == "revoked_api_key"


def test_cli_rotate_and_errors(srv: RunningServer) -> None:
    issued = json.loads(cli(srv, "create", "--name", "r", "--json").stdout)
    rotated = cli(srv, "rotate", issued["id"], "--json")
    assert rotated.returncode == 0 and json.loads(rotated.stdout)["replaces"] == issued["id"]
    assert chat(json.loads(rotated.stdout)["key"], srv).choices
    missing = cli(srv, "revoke", "key_nope")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: No key with id 'key_nope'")
    bad = cli(srv, "create", "--name", "x", "--expires-in", "forever")
    assert bad.returncode == 2 and "like 30d" in bad.stderr and "Traceback" not in bad.stderr


def test_expiry(srv: RunningServer) -> None:
    """A key made to expire answers until its moment and is refused from then on. Neither half races the
    clock: a key made to last an hour answers, and one made to last a second is asked once the clock has
    passed the expires_at it was given (waited for), however long the CLI and the server take."""
    lasting = json.loads(cli(srv, "create", "--name", "lasting", "--expires-in", "1h", "--json").stdout)
    brief = json.loads(cli(srv, "create", "--name", "brief", "--expires-in", "1s", "--json").stdout)
    for issued, lifetime in ((lasting, timedelta(hours=1)), (brief, timedelta(seconds=1))):
        assert datetime.fromisoformat(issued["expires_at"]) - datetime.fromisoformat(issued["created_at"]) == lifetime
    while datetime.now(UTC) <= datetime.fromisoformat(brief["expires_at"]):
        time.sleep(0.05)
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(brief["key"], srv)
    assert caught.value.code == "expired_api_key" and "expired" in caught.value.message
    assert admin(srv, "GET", f"/keys/{brief['id']}").json()["state"] == "expired"
    assert chat(lasting["key"], srv).choices
    assert admin(srv, "GET", f"/keys/{lasting['id']}").json()["state"] == "active"


def test_keys_survive_a_restart_and_stay_hashed(
    server_factory: Callable[..., RunningServer], catalog: Path, tmp_path: Path
) -> None:
    first = server_factory("--models-file", str(catalog), workdir=tmp_path / "one")
    key = admin(first, "POST", "/keys", {"name": "keeper"}).json()["key"]
    first.stop()
    again = server_factory("--models-file", str(catalog), "--data-dir", str(first.data_dir), workdir=tmp_path / "two")
    assert chat(key, again).choices
    files = b"".join(p.read_bytes() for p in first.data_dir.glob("pinaivu.db*"))
    assert key.encode() not in files and TEST_KEY.encode() not in files


def test_first_start_prints_an_admin_key_once(server_factory: Callable[..., RunningServer], catalog: Path) -> None:
    srv = server_factory("--models-file", str(catalog), env={"PINAIVU_API_KEY": ""})
    log = srv.log()
    assert "will not be shown again" in log
    key = next(word for word in log.split() if word.startswith("sk-pnv-"))
    assert (
        httpx.get(f"{srv.base_url}/admin/keys", headers={"authorization": f"Bearer {key}"}, timeout=10).status_code
        == 200
    )


def test_openapi_documents_the_admin_api(srv: RunningServer) -> None:
    paths = httpx.get(f"{srv.base_url}/docs/openapi.json", timeout=10).json()["paths"]
    assert {"/admin/keys", "/admin/keys/{key_id}", "/admin/keys/{key_id}/rotate", "/v1/chat/completions"} <= set(paths)
    assert "requestBody" in paths["/admin/keys"]["post"]
    chat_body = paths["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "role" in chat_body["properties"]["messages"]["items"]["properties"]  # $defs inlined
    assert "$ref" not in json.dumps(chat_body)


def test_missing_key_on_v1(srv: RunningServer) -> None:
    response = httpx.get(f"{srv.v1}/models", timeout=10)
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"
    assert httpx.get(f"{srv.v1}/models", headers=AUTH, timeout=10).status_code == 200


def test_rotating_a_revoked_key_is_a_409(srv: RunningServer) -> None:
    made = httpx.post(f"{srv.base_url}/admin/keys", json={"name": "r"}, headers=AUTH, timeout=10).json()
    first = httpx.post(f"{srv.base_url}/admin/keys/{made['id']}/rotate", headers=AUTH, timeout=10)
    assert first.status_code == 201
    again = httpx.post(f"{srv.base_url}/admin/keys/{made['id']}/rotate", headers=AUTH, timeout=10)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "key_revoked"
    assert first.json()["id"] in again.json()["error"]["message"]  # it names the replacement
    listed = httpx.get(f"{srv.base_url}/admin/keys", headers=AUTH, timeout=10).json()["data"]
    assert sum(k["name"] == "r" for k in listed) == 2  # no fresh key was issued


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "rpm": 10**20}, "rpm"),
        ({"name": "x", "tpm": 10**20}, "tpm"),
        ({"name": "x", "expires_in": "99999999999d"}, "expires_in"),
        ({"name": "x", "expires_in": "400000d"}, "expires_in"),
    ],
)
def test_out_of_range_key_fields_are_422(srv: RunningServer, body: dict[str, Any], field: str) -> None:
    answer = httpx.post(f"{srv.base_url}/admin/keys", json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", field]
