"""A node's signing key is pinned on first contact and every receipt it sends is verified against it: a real
gateway (`serve --nodes ... --no-local`) in front of two pinaivu nodes the test controls. A receipt signed by
another key, or a key changed without a published rotation, makes the node untrusted (out of rotation, in
/health); a whole answer moves to the other node; `pinaivu-local nodes trust NAME` accepts a key on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fleet.misbehaving_node import Answer, Signer, misbehaving_node
from tests.fleet.test_gateway import chat_body, node_view, nodes_file, record_of, wait_for
from tests.helpers import AUTH, TEST_KEY, RunningServer, TinyModels, start_server, write_catalog

MODEL = "llama3.2:1b"
GATEWAY_ENV = {"PINAIVU_NODE_POLL_S": "0.3", "NODE_KEY": TEST_KEY}


@dataclass
class Fleet:
    server: RunningServer
    nodes: Path
    odd: Answer
    good: Answer


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("pins")
    with misbehaving_node(MODEL) as (odd_url, odd), misbehaving_node(MODEL) as (good_url, good):
        for answer, name in ((odd, "node-odd"), (good, "node-good")):
            answer.stream, answer.identity = "receipt", Signer(name)
        odd.slots, good.slots = 4, 1  # the router tries `odd` first: it reports more free slots
        listed = nodes_file(workdir / "nodes.toml", {"odd": odd_url, "good": good_url})
        server = start_server(workdir, "--nodes", str(listed), "--no-local", env=GATEWAY_ENV)
        try:
            yield Fleet(server, listed, odd, good)
        finally:
            server.stop()


def trust(fleet: Fleet, name: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, on the gateway's data dir and nodes file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINAIVU_")}
    env.update({"PINAIVU_DATA_DIR": str(fleet.server.data_dir), "NODE_KEY": TEST_KEY})
    command = [sys.executable, "-m", "pinaivu_local", "nodes", "trust", name, "--nodes", str(fleet.nodes)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def chat(fleet: Fleet) -> httpx.Response:
    return httpx.post(f"{fleet.server.v1}/chat/completions", json=chat_body(), headers=AUTH, timeout=60)


def state(fleet: Fleet, name: str) -> str:
    return str(node_view(fleet.server, name)["state"])


def test_receipts_verify_against_the_pinned_key_and_a_forged_one_fails_over(fleet: Fleet) -> None:
    wait_for(lambda: state(fleet, "odd") == "up" and state(fleet, "good") == "up", 30, "both nodes up")
    pinned = node_view(fleet.server, "odd")["pinned_key"]
    assert pinned["node_id"] == "node-odd" and pinned["key_id"] == fleet.odd.identity.key()["key_id"]
    assert node_view(fleet.server, "odd", headers={})["pinned_key"] is None  # the detail is for admin keys

    genuine = chat(fleet)
    assert genuine.status_code == 200, genuine.text
    record = record_of(fleet.server, genuine.json()["request_id"])
    assert record["node"] == "odd" and record["receipt_verified"] is True

    # A receipt of another node attached to odd's output: the answer moves to `good`, odd is out.
    fleet.odd.signer = Signer("node-elsewhere")
    moved = chat(fleet)
    assert moved.status_code == 200, moved.text
    record = record_of(fleet.server, moved.json()["request_id"])
    assert record["node"] == "good" and record["receipt_verified"] is True
    assert record["receipt"]["receipt"]["node_id"] == "node-good"
    public = node_view(fleet.server, "odd", headers={})
    assert public["state"] == "untrusted" and public["last_error_class"] == "untrusted"
    assert public["last_error"] is None
    assert "does not verify against its pinned key" in node_view(fleet.server, "odd")["last_error"]
    # Health checks pass, and it stays out: only `nodes trust` brings it back.
    seen = fleet.odd.requests
    for _ in range(5):
        assert chat(fleet).status_code == 200
    assert fleet.odd.requests == seen and state(fleet, "odd") == "untrusted"

    fleet.odd.signer = None
    done = trust(fleet, "odd")
    assert done.returncode == 0, done.stderr
    key_id = fleet.odd.identity.key()["key_id"]
    assert done.stdout == f"node odd: trusted key {key_id} of node node-odd (was {key_id}, unchanged)\n"
    wait_for(lambda: state(fleet, "odd") == "up", 30, "odd back in rotation")


def test_a_changed_key_is_untrusted_until_trusted_on_purpose_and_a_rotation_is_followed(fleet: Fleet) -> None:
    wait_for(lambda: state(fleet, "odd") == "up", 30, "odd up")
    old = fleet.odd.identity.key()["key_id"]
    fleet.odd.identity.rotate()  # published: the pinned key is listed as retired
    new = fleet.odd.identity.key()["key_id"]
    wait_for(lambda: node_view(fleet.server, "odd")["pinned_key"]["key_id"] == new, 30, "the rotation followed")
    assert state(fleet, "odd") == "up"

    fleet.odd.identity = Signer("node-odd")  # a new key, the pinned one gone: no published rotation
    wait_for(lambda: state(fleet, "odd") == "untrusted", 30, "odd untrusted")
    assert "changed without a published rotation" in node_view(fleet.server, "odd")["last_error"]
    assert chat(fleet).json()["request_id"]  # `good` answers meanwhile

    done = trust(fleet, "odd")
    assert done.returncode == 0, done.stderr
    newest = fleet.odd.identity.key()["key_id"]
    assert done.stdout == f"node odd: trusted key {newest} of node node-odd (was {new})\n"
    wait_for(lambda: state(fleet, "odd") == "up", 30, "odd back in rotation")
    assert node_view(fleet.server, "odd")["pinned_key"]["key_id"] == newest != old
    answer = chat(fleet)
    assert record_of(fleet.server, answer.json()["request_id"])["receipt_verified"] is True


def test_nodes_trust_fails_with_one_line(fleet: Fleet) -> None:
    unknown = trust(fleet, "nosuch")
    assert unknown.returncode != 0
    assert unknown.stderr.strip().splitlines() == [f"Error: {fleet.nodes}: no node 'nosuch' (nodes: good, odd)"]


def test_a_genuine_nodes_receipts_verify_and_are_recorded_as_verified(tiny_models: TinyModels, tmp_path: Path) -> None:
    """A real pinaivu node behind a real gateway: its key is pinned as its /v1/node says, and its receipts,
    whole and streamed, are recorded as verified."""
    catalog = write_catalog(tmp_path / "models.toml", {MODEL: {"path": str(tiny_models.slow), "n_ctx": 1024}})
    (tmp_path / "node").mkdir()
    (tmp_path / "gw").mkdir()
    node = start_server(tmp_path / "node", "--models-file", str(catalog))
    gateway = None
    try:
        listed = nodes_file(tmp_path / "nodes.toml", {"real": node.base_url})
        gateway = start_server(tmp_path / "gw", "--nodes", str(listed), "--no-local", env=GATEWAY_ENV)
        wait_for(lambda: node_view(gateway, "real")["state"] == "up", 60, "the node up")
        published = httpx.get(f"{node.base_url}/v1/node", timeout=10).json()
        pinned = node_view(gateway, "real")["pinned_key"]
        assert (pinned["node_id"], pinned["key_id"]) == (published["node_id"], published["current_key"]["key_id"])
        whole = httpx.post(f"{gateway.v1}/chat/completions", json=chat_body(), headers=AUTH, timeout=120)
        assert whole.status_code == 200, whole.text
        assert record_of(gateway, whole.json()["request_id"])["receipt_verified"] is True
        body = chat_body(stream=True)
        with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body, headers=AUTH, timeout=120) as r:
            assert r.status_code == 200
            streamed = r.headers["x-request-id"]
            assert any("pinaivu_receipt" in line for line in r.iter_lines())
        assert record_of(gateway, streamed)["receipt_verified"] is True
        assert node_view(gateway, "real")["state"] == "up"
    finally:
        for server in (node, *([gateway] if gateway else [])):
            server.stop()
