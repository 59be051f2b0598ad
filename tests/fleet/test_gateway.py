"""A gateway in front of real nodes over loopback: routing, records, health, kill -9 failover, recovery, 503."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import AUTH, NO_EOG, TEST_KEY, RunningServer, TinyModels, free_port, start_server, write_catalog

# Nodes are polled this often, so the tests see them come and go quickly.
POLL = {"PINAIVU_NODE_POLL_S": "0.5", "PINAIVU_NODE_TIMEOUT_S": "90", "NODE_KEY": TEST_KEY}
# The nodes hold a stream's text for a second unless asked otherwise: a stream read from a node directly comes
# in at most three chunks, whatever the machine's load, and one the gateway asked for every token in many.
NODE_ENV = {"PINAIVU_STREAM_INTERVAL_MS": "1000"}


@dataclass
class Fleet:
    workdir: Path
    catalog: Path
    nodes: dict[str, RunningServer]
    gateway: RunningServer

    def restart(self, name: str) -> None:
        port = int(self.nodes[name].base_url.rsplit(":", 1)[1])
        folder = self.workdir / f"{name}-again"  # its own log; its data dir (and signing key, which the gateway
        folder.mkdir(exist_ok=True)  # pinned) as a node restarted on its box keeps them
        env = {**NODE_ENV, "PINAIVU_DATA_DIR": str(self.nodes[name].data_dir)}
        self.nodes[name] = start_server(folder, "--models-file", str(self.catalog), env=env, port=port)


def nodes_file(path: Path, nodes: dict[str, str], kind: str = "pinaivu") -> Path:
    lines = []
    for name, url in nodes.items():
        lines += [f"[nodes.{name}]", f'url = "{url}"', 'api_key_env = "NODE_KEY"', f'kind = "{kind}"', "slots = 2", ""]
    path.write_text("\n".join(lines))
    return path


def node_view(gateway: RunningServer, name: str, headers: dict[str, str] = AUTH) -> dict[str, Any]:
    """The node as /health shows it (to an admin key unless `headers` says otherwise)."""
    nodes = httpx.get(f"{gateway.base_url}/health", headers=headers, timeout=10).json()["nodes"]
    return next(n for n in nodes if n["name"] == name)


def wait_for(condition: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[Fleet]:
    """Two pinaivu nodes serving llama3.2:1b (the slower tiny model, 2 slots each) behind a pure gateway."""
    workdir = tmp_path_factory.mktemp("fleet")
    catalog = write_catalog(
        workdir / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.slow), "n_ctx": 1024, "parallel": 2}}
    )
    nodes: dict[str, RunningServer] = {}
    gateway = None
    try:
        for name in ("a", "b"):
            folder = workdir / name
            folder.mkdir()
            nodes[name] = start_server(folder, "--models-file", str(catalog), env=NODE_ENV)
        listed = nodes_file(workdir / "nodes.toml", {name: node.base_url for name, node in nodes.items()})
        (workdir / "gw").mkdir()
        gateway = start_server(workdir / "gw", "--nodes", str(listed), "--no-local", env=POLL)
        yield Fleet(workdir, catalog, nodes, gateway)  # a restarted node replaces its entry in `nodes`
    finally:
        for server in [*nodes.values(), *([gateway] if gateway else [])]:
            server.stop()


def chat_body(content: str = "hi", max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2:1b",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        **extra,
    }


def test_models_and_health_come_from_the_nodes(fleet: Fleet) -> None:
    models = httpx.get(f"{fleet.gateway.v1}/models", headers=AUTH, timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["llama3.2:1b"]
    health = httpx.get(f"{fleet.gateway.base_url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    for name in ("a", "b"):
        node = node_view(fleet.gateway, name)
        assert node["state"] == "up" and node["last_error"] is None and node["since"].endswith("Z")
        assert node["models"]["llama3.2:1b"]["slots"] == 2


def test_openai_client_through_the_gateway_and_records_name_the_node(fleet: Fleet) -> None:
    client = openai.OpenAI(api_key=TEST_KEY, base_url=fleet.gateway.v1, max_retries=0)
    whole = client.chat.completions.create(**chat_body())
    assert whole.usage is not None and whole.usage.completion_tokens >= 1
    chunks = list(client.chat.completions.create(**chat_body(), stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    for request_id in (whole.model_extra["request_id"], chunks[0].model_extra["request_id"]):  # type: ignore[index]
        record = httpx.get(f"{fleet.gateway.v1}/requests/{request_id}", headers=AUTH, timeout=10).json()
        assert record["node"] in ("a", "b") and record["status"] == 200
        assert (
            len(record["model_sha256"]) == 64 and record["receipt"]["receipt"]["model_sha256"] == record["model_sha256"]
        )
    assert chunks[-1].model_extra["pinaivu_receipt"] == record["receipt"]  # type: ignore[index]


def content_chunks(v1: str) -> tuple[int, int]:
    """(chunks with text, completion tokens) of a streamed 48-token chat."""
    body = chat_body("pace", max_tokens=48, logit_bias=NO_EOG, stream=True, stream_options={"include_usage": True})
    with httpx.stream("POST", f"{v1}/chat/completions", json=body, headers=AUTH, timeout=60) as response:
        assert response.status_code == 200, response.read()
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    texts = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    return len(texts), chunks[-1]["usage"]["completion_tokens"]


def test_the_gateway_asks_its_nodes_for_every_token_at_once(fleet: Fleet) -> None:
    """A node joins its interval's text into one chunk, but not for a gateway, which counts the tokens of a
    stream cut short by its chunks. Asked directly, the nodes here (1 s) send the first token's text and the
    rest (a slow machine: one chunk more); through the gateway, a chunk per token, or per few where the node's
    event loop fell behind (18 of 48 on a loaded machine), never just those."""
    direct, tokens = content_chunks(fleet.nodes["a"].v1)
    through, tokens_through = content_chunks(fleet.gateway.v1)
    assert tokens == tokens_through == 48
    assert direct <= 3 < through


def test_the_gateway_keeps_each_nodes_receipt_as_the_node_signed_it(fleet: Fleet, tmp_path: Path) -> None:
    """The gateway signs nothing it did not compute: the receipt is the node's, checked with the node's keys."""
    client = openai.OpenAI(api_key=TEST_KEY, base_url=fleet.gateway.v1, max_retries=0)
    body = chat_body("prove where this ran")
    raw = client.chat.completions.with_raw_response.create(**body)
    receipt = json.loads(raw.headers["x-pinaivu-receipt"])
    record = httpx.get(f"{fleet.gateway.v1}/requests/{raw.headers['x-request-id']}", headers=AUTH, timeout=10).json()
    assert record["receipt"] == receipt
    node = fleet.nodes[record["node"]]
    node_id = httpx.get(f"{node.base_url}/v1/node", timeout=10).json()["node_id"]
    gateway_id = httpx.get(f"{fleet.gateway.base_url}/v1/node", timeout=10).json()["node_id"]
    assert receipt["receipt"]["node_id"] == node_id != gateway_id
    (tmp_path / "receipt.json").write_text(json.dumps(receipt))
    (tmp_path / "messages.json").write_text(json.dumps(body["messages"]))
    (tmp_path / "output.txt").write_text(raw.parse().choices[0].message.content or "")
    kept = [str(tmp_path / "receipt.json"), "--input", str(tmp_path / "messages.json")]
    kept += ["--output", str(tmp_path / "output.txt")]

    def verify(*args: str) -> int:
        command = [sys.executable, "-m", "pinaivu_local", "receipts", "verify", *kept, *args]
        return subprocess.run(command, capture_output=True, timeout=120, check=False).returncode

    assert verify("--node", node.base_url) == 0  # the node's signature over what the client sent and got
    assert verify("--node", fleet.gateway.base_url) == 3  # not the gateway's: it signed nothing


def test_load_spreads_over_both_nodes_and_a_shared_prefix_sticks(fleet: Fleet) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=AUTH, timeout=60) as http:
            calls = [http.post(f"{fleet.gateway.v1}/chat/completions", json=chat_body(f"q{i}")) for i in range(4)]
            return await asyncio.gather(*calls)

    placed = {record_node(fleet, r.json()["request_id"]) for r in asyncio.run(burst())}
    assert placed == {"a", "b"}  # most free capacity first: four requests, two slots each
    system = {"role": "system", "content": "You are a terse assistant. " * 20}
    sticky = set()
    for question in ("one", "two", "three"):
        body = {**chat_body(), "messages": [system, {"role": "user", "content": question}]}
        answered = httpx.post(f"{fleet.gateway.v1}/chat/completions", json=body, headers=AUTH, timeout=60)
        sticky.add(record_node(fleet, answered.json()["request_id"]))
    assert len(sticky) == 1  # the node that holds the prefix's KV cache


def record_node(fleet: Fleet, request_id: str) -> str:
    return str(httpx.get(f"{fleet.gateway.v1}/requests/{request_id}", headers=AUTH, timeout=10).json()["node"])


def test_a_nodes_refusal_of_the_request_itself_is_the_clients_error(fleet: Fleet) -> None:
    """Too long for the node's context: the node's 400 reaches the client, and the node stays in rotation."""
    body = chat_body("word " * 3000, max_tokens=10)
    refused = httpx.post(f"{fleet.gateway.v1}/chat/completions", json=body, headers=AUTH, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"
    assert [node_view(fleet.gateway, name)["state"] for name in ("a", "b")] == ["up", "up"]
    # what nodes cannot be sent (Anthropic's top_k: OpenAI's chat has none) is refused by name, never dropped
    body = {**chat_body(), "top_k": 3}
    refused = httpx.post(f"{fleet.gateway.base_url}/v1/messages", json=body, headers=AUTH, timeout=60)
    assert refused.status_code == 400 and "top_k" in refused.json()["error"]["message"], refused.text


def test_an_agents_second_turn_passes_through_and_no_node_goes_down(fleet: Fleet) -> None:
    """A history holding an assistant's tool call (every agent's second turn) is forwarded as sent, its
    arguments a string: it was forwarded as an object, which every node refused, so one such request from
    any key took every node out of rotation and left other clients 503s."""
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    for _ in range(3):
        body = {**chat_body(max_tokens=2), "messages": history}
        answered = httpx.post(f"{fleet.gateway.v1}/chat/completions", json=body, headers=AUTH, timeout=60)
        assert answered.status_code == 200, answered.text[:300]
    assert [node_view(fleet.gateway, name)["state"] for name in ("a", "b")] == ["up", "up"]


def verify(gateway: RunningServer, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Ask through the gateway, then verify the answer there: (the request_id, the verification)."""
    answer = httpx.post(f"{gateway.v1}/chat/completions", json=body, headers=AUTH, timeout=60).json()
    output = answer["choices"][0]["message"]["content"]
    claim = {"messages": body["messages"], "output": output}
    checked = httpx.post(f"{gateway.v1}/requests/{answer['request_id']}/verify", json=claim, headers=AUTH, timeout=60)
    assert checked.status_code == 200, checked.text
    return answer["request_id"], checked.json()


def test_verify_replays_on_a_node_holding_the_same_model_file(fleet: Fleet) -> None:
    request_id, checked = verify(fleet.gateway, chat_body("replay me", max_tokens=6, temperature=0, logit_bias=NO_EOG))
    assert checked["verified"] and checked["replay"]["performed"] and checked["replay"]["reproduced"]
    original, replay = record_of(fleet.gateway, request_id), record_of(fleet.gateway, checked["replay"]["request_id"])
    assert replay["replay_of"] == request_id and replay["node"] in ("a", "b")
    assert replay["model_sha256"] == original["model_sha256"] is not None


async def _stream(http: httpx.AsyncClient, url: str, index: int) -> dict[str, Any]:
    """One long chat, streamed for even indexes: whether it saw text, how it ended."""
    body = chat_body(f"story {index}", max_tokens=300, ignore_eos=True, logit_bias=NO_EOG, stream=index % 2 == 0)
    seen = {"text": False, "done": False, "error": None}
    if index % 2:  # a whole answer: nothing reaches the client before its end, so it always fails over
        answered = await http.post(url, json=body)
        assert answered.status_code == 200, answered.text
        assert answered.json()["usage"]["completion_tokens"] == 300
        return {"text": False, "done": True, "error": None}
    async with http.stream("POST", url, json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                seen["done"] = True
                break
            chunk = json.loads(line[6:])
            if "error" in chunk:
                seen["error"] = chunk["error"]
                break
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                seen["text"] = True
    return seen


def test_kill_9_a_node_under_load_then_it_comes_back(fleet: Fleet) -> None:
    """Requests queued on the killed node finish on the other, invisibly; only those already streaming
    from it end with an error event; it is back in rotation within 15 s of its restart."""

    async def scenario() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(headers=AUTH, timeout=120) as http:
            streams = [
                asyncio.ensure_future(_stream(http, f"{fleet.gateway.v1}/chat/completions", i)) for i in range(8)
            ]
            # Kill `a` once it has requests both running and queued (two slots, four requests each).
            await asyncio.to_thread(wait_for, lambda: _busy(fleet.nodes["a"]), 60, "node a running and queueing")
            fleet.nodes["a"].process.kill()
            return await asyncio.gather(*streams)

    results = asyncio.run(scenario())
    failed = [r for r in results if not r["done"]]
    assert len(failed) <= 2  # at most the two that were streaming from `a` (only streamed ones can fail)
    assert all(r["text"] and r["error"]["code"] == "engine_error" for r in failed)
    assert sum(r["done"] for r in results) >= 6
    down = node_view(fleet.gateway, "a")
    assert down["state"] == "down" and down["last_error"] and down["last_error_class"] == "connection"
    public = node_view(fleet.gateway, "a", headers={})  # anyone sees the class, only an admin key the text
    assert public["last_error_class"] == "connection" and public["last_error"] is None and public["url"] is None
    records = httpx.get(f"{fleet.gateway.v1}/requests?limit=8", headers=AUTH, timeout=10).json()["data"]
    assert sum(r["node"] == "b" and r["status"] == 200 for r in records) >= 6
    assert all("failed while streaming" in r["error"] for r in records if r["status"] != 200)

    fleet.nodes["a"].process.wait()
    fleet.restart("a")
    back = wait_for(lambda: node_view(fleet.gateway, "a")["state"] == "up", 15, "node a back in rotation")
    assert back < 15


def _busy(node: RunningServer) -> bool:
    model = httpx.get(f"{node.base_url}/health", timeout=5).json()["models"][0]
    return bool(model["running"] >= 1 and model["queued"] >= 1)


def test_all_nodes_down_is_503_with_retry_after(fleet: Fleet) -> None:
    for node in fleet.nodes.values():
        node.process.kill()
        node.process.wait()
    refused = httpx.post(f"{fleet.gateway.v1}/chat/completions", json=chat_body(), headers=AUTH, timeout=30)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_nodes_available"
    assert int(refused.headers["retry-after"]) >= 1
    wait_for(lambda: httpx.get(f"{fleet.gateway.base_url}/health", timeout=5).status_code == 503, 10, "health 503")
    assert httpx.get(f"{fleet.gateway.v1}/models", headers=AUTH, timeout=10).json()["data"] == []


@pytest.fixture
def foreign(tmp_path: Path, tiny_models: TinyModels) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """llama-cpp-python's own llama_cpp.server on the tiny model, as llama3.2:1b."""
    port = free_port()
    command = [sys.executable, "-m", "pinaivu_local.bench.llama_cpp_launcher", "--weight-repack", "off", "--"]
    command += ["--model", str(tiny_models.f16), "--model_alias", "llama3.2:1b", "--n_ctx", "512"]
    # By default a request that arrives during a stream (a health check included) cuts that stream.
    command += ["--host", "127.0.0.1", "--port", str(port), "--interrupt_requests", "False"]
    log = (tmp_path / "llama_cpp_server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 60, "llama_cpp.server to start")
        yield process, url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/models", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_an_openai_compatible_server_is_a_node_beside_the_local_engine(
    foreign: tuple[subprocess.Popen[bytes], str], tiny_models: TinyModels, tmp_path: Path
) -> None:
    """llama3.2:1b only on llama_cpp.server (kind "openai"), llama3.2:3b on the gateway's own engine."""
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:3b": {"path": str(tiny_models.q8), "n_ctx": 512}})
    listed = nodes_file(tmp_path / "nodes.toml", {"foreign": foreign[1]}, kind="openai")
    (tmp_path / "gw").mkdir()
    gateway = start_server(tmp_path / "gw", "--models-file", str(catalog), "--nodes", str(listed), env=POLL)
    try:
        client = openai.OpenAI(api_key=TEST_KEY, base_url=gateway.v1, max_retries=0)
        assert sorted(m.id for m in client.models.list()) == ["llama3.2:1b", "llama3.2:3b"]
        for model, node in (("llama3.2:1b", "foreign"), ("llama3.2:3b", "local")):
            body = {**chat_body(max_tokens=3), "model": model}
            chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
            whole = client.chat.completions.create(**body)
            assert whole.choices[0].finish_reason in ("stop", "length")
            record = record_of(gateway, whole.model_extra["request_id"])  # type: ignore[index]
            assert record["node"] == node
            # llama_cpp.server signs nothing: no model hash is known for it, so no receipt
            assert (record["receipt"] is None) == (node == "foreign")
        # a replay needs a node shown to hold the same model file: llama_cpp.server shows none
        _, checked = verify(gateway, chat_body(max_tokens=3, temperature=0))
        assert not checked["replay"]["performed"] and "none is available" in checked["replay"]["reason"]
        assert {n["name"]: n["state"] for n in httpx.get(f"{gateway.base_url}/health", timeout=5).json()["nodes"]} == {
            "local": "up",
            "foreign": "up",
        }
    finally:
        gateway.stop()


def record_of(server: RunningServer, request_id: str | None) -> dict[str, Any]:
    return dict(httpx.get(f"{server.v1}/requests/{request_id}", headers=AUTH, timeout=10).json())


def test_a_nodes_4xx_is_the_clients_answer_and_only_its_failures_count_against_it(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    """A node (of any kind) that refuses a request with a 4xx gives the client that answer, in our shape, and
    stays in rotation; a 5xx takes it out. Any 4xx of an OpenAI-compatible node took it out of rotation."""
    from tests.fleet.misbehaving_node import misbehaving_node

    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:3b": {"path": str(tiny_models.q8), "n_ctx": 512}})
    with misbehaving_node("llama3.2:1b") as (url, answer):
        listed = nodes_file(tmp_path / "nodes.toml", {"odd": url}, kind="openai")
        (tmp_path / "gw").mkdir()
        gateway = start_server(tmp_path / "gw", "--models-file", str(catalog), "--nodes", str(listed), env=POLL)
        try:
            wait_for(lambda: node_view(gateway, "odd")["state"] == "up", 30, "the node to be up")
            chat = {**chat_body(max_tokens=3), "model": "llama3.2:1b"}
            answer.body = {
                "error": {"message": "This model's maximum context length is 512 tokens", "code": "too_long"}
            }
            for _ in range(3):
                refused = httpx.post(f"{gateway.v1}/chat/completions", json=chat, headers=AUTH, timeout=30)
                assert refused.status_code == 400, refused.text[:300]
                assert refused.json()["error"]["code"] == "too_long" and "512" in refused.json()["error"]["message"]
            assert node_view(gateway, "odd")["state"] == "up"
            answer.status, answer.body = 422, {"detail": [{"loc": ["body", "x"], "msg": "bad", "type": "value_error"}]}
            invalid = httpx.post(f"{gateway.v1}/chat/completions", json=chat, headers=AUTH, timeout=30)
            assert invalid.status_code == 422 and invalid.json()["detail"][0]["msg"] == "bad"
            answer.status, answer.body = 500, {"error": {"message": "boom"}}
            failed = httpx.post(f"{gateway.v1}/chat/completions", json=chat, headers=AUTH, timeout=30)
            assert failed.status_code == 503  # no other node: the client may retry
            assert node_view(gateway, "odd")["state"] == "down"
        finally:
            gateway.stop()
