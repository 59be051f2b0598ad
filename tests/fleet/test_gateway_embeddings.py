"""Embeddings and rerank through a pure gateway in front of real nodes (`serve --test-models`) over loopback:
forwarded as the client sent them, answered as the node answers, recorded at the gateway naming the node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.fleet.test_gateway import POLL, nodes_file
from tests.helpers import AUTH, TEST_KEY, RunningServer, start_server

SHIPPED = Path(__file__).parents[2] / "models.toml"
EMBED = "nomic-embed-text:v1.5"  # a tiny BERT embedding model under --test-models
RERANK = "test-rerank"
CHAT = "llama3.2:1b"


@dataclass
class Gateways:
    node: RunningServer  # the one node: pinaivu to one gateway, "openai" to the other
    pinaivu: RunningServer
    openai: RunningServer


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    workdir = tmp_path_factory.mktemp("gateway-embeddings")
    started: list[RunningServer] = []
    try:
        (workdir / "node").mkdir()
        node = start_server(workdir / "node", "--test-models", "--models-file", str(SHIPPED))
        started.append(node)
        gateways = []
        for kind in ("pinaivu", "openai"):
            listed = nodes_file(workdir / f"nodes-{kind}.toml", {"n": node.base_url}, kind=kind)
            (workdir / kind).mkdir()
            gateways.append(start_server(workdir / kind, "--nodes", str(listed), "--no-local", env=POLL))
            started.append(gateways[-1])
        yield Gateways(node, *gateways)
    finally:
        for server in started:
            server.stop()


def _client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0, timeout=120)


def test_models_keep_their_kind_and_capabilities(gateways: Gateways) -> None:
    def listed(server: RunningServer) -> dict[str, tuple[str, list[str]]]:
        data = httpx.get(f"{server.v1}/models", headers=AUTH, timeout=10).json()["data"]
        return {m["id"]: (m["kind"], m["capabilities"]) for m in data}

    at_node = listed(gateways.node)
    assert at_node[RERANK][0] == "rerank" and at_node[EMBED][0] == "embedding"
    assert listed(gateways.pinaivu) == at_node == listed(gateways.openai)


@pytest.mark.parametrize("kind", ["pinaivu", "openai"])
def test_embeddings_through_the_gateway_equal_the_nodes_own(gateways: Gateways, kind: str) -> None:
    gateway = gateways.pinaivu if kind == "pinaivu" else gateways.openai
    texts = [f"input {i}: " + "the quick brown fox " * (i % 5) for i in range(64)]
    own = _client(gateways.node).embeddings.create(model=EMBED, input=texts, encoding_format="float")
    default = _client(gateway).embeddings.create(model=EMBED, input=texts)  # the SDK asks for base64, decodes it
    for through in (default, _client(gateway).embeddings.create(model=EMBED, input=texts, encoding_format="float")):
        assert [d.index for d in through.data] == list(range(64))
        assert np.array_equal(
            np.array([d.embedding for d in through.data], dtype=np.float32),
            np.array([d.embedding for d in own.data], dtype=np.float32),
        )
        assert through.usage.prompt_tokens == own.usage.prompt_tokens


def test_the_record_names_the_node_and_the_receipt_is_the_nodes(gateways: Gateways) -> None:
    raw = _client(gateways.pinaivu).embeddings.with_raw_response.create(
        model=EMBED, input=["a", "b"], encoding_format="float"
    )
    body = json.loads(raw.text)
    request_id = body["request_id"]
    assert raw.headers["x-request-id"] == request_id and request_id.startswith("req_")
    record = httpx.get(f"{gateways.pinaivu.v1}/requests/{request_id}", headers=AUTH, timeout=10).json()
    assert record["node"] == "n" and record["kind"] == "embedding" and record["status"] == 200
    assert any(f"request_id={request_id}" in line for line in gateways.pinaivu.log().splitlines())  # access log
    assert record["usage_source"] == "node" and record["usage"]["prompt_tokens"] == body["usage"]["prompt_tokens"]
    receipt = json.loads(raw.headers["x-pinaivu-receipt"])
    assert receipt == record["receipt"] and receipt["receipt"]["kind"] == "embedding"
    assert record["model_sha256"] == receipt["receipt"]["model_sha256"]
    assert record["commitment"]["output_sha256"] == receipt["receipt"]["output_sha256"]
    # The node signed it: the node's own verify endpoint says it holds.
    verdict = httpx.post(f"{gateways.node.v1}/receipts/verify", headers=AUTH, json=receipt, timeout=10).json()
    assert verdict["valid"] is True


@pytest.mark.parametrize("kind", ["pinaivu", "openai"])
def test_rerank_through_the_gateway_equals_the_nodes_own(gateways: Gateways, kind: str) -> None:
    gateway = gateways.pinaivu if kind == "pinaivu" else gateways.openai  # a pinaivu node lists rerank
    body = {"model": RERANK, "query": "which has digits", "documents": ["no digits", "1 2 3 4", "a 1"], "top_n": 2}
    own = httpx.post(f"{gateways.node.v1}/rerank", headers=AUTH, json=body, timeout=60).json()
    through = httpx.post(f"{gateway.v1}/rerank", headers=AUTH, json=body, timeout=60)
    assert through.status_code == 200, through.text
    assert through.json()["results"] == own["results"] and len(own["results"]) == 2
    record = httpx.get(f"{gateway.v1}/requests/{through.json()['request_id']}", headers=AUTH, timeout=10).json()
    assert record["kind"] == "rerank" and record["node"] == "n"


def test_a_nodes_refusal_is_the_clients_answer(gateways: Gateways) -> None:
    client = _client(gateways.pinaivu)
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=EMBED, input="x", dimensions=100_000)  # past its vectors
    assert "dimensions" in str(refused.value)
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=RERANK, input="x")
    assert "rerank" in str(refused.value)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    health = httpx.get(f"{gateways.pinaivu.base_url}/health", headers=AUTH, timeout=10).json()
    assert next(n for n in health["nodes"] if n["name"] == "n")["state"] == "up"  # refusals count not against it
