"""A gateway forwarding embeddings and rerank to a node that answers wrongly on purpose (an OpenAI-compatible
node the test controls): a wrong answer is never passed on, the node is counted against; rerank goes only
to nodes that serve it, else is refused by name."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fleet.test_gateway import node_view, wait_for
from tests.fleet.test_node_bounds import Gateway, gateway_before_odd_node
from tests.helpers import AUTH

MODEL = "embed-model"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway_before_odd_node(tmp_path_factory.mktemp("embedding-bounds"), MODEL) as gateway:
        yield gateway


def _vectors(n: int, dims: int = 4) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": [0.5] * dims} for i in range(n)]
    return {"object": "list", "data": data, "model": MODEL, "usage": {"prompt_tokens": 4, "total_tokens": 4}}


@pytest.fixture
def odd(gateway: Gateway) -> Gateway:
    """The gateway, its node up again and answering two good vectors."""
    gateway.answer.stream, gateway.answer.status, gateway.answer.body = None, 200, _vectors(2)
    wait_for(lambda: node_view(gateway.server, "odd")["state"] == "up", 30, "the node to be up")
    return gateway


def _embed(gateway: Gateway, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "input": ["a", "b"], "encoding_format": "float", **extra}
    return httpx.post(f"{gateway.server.v1}/embeddings", json=body, headers=AUTH, timeout=60)


def test_a_good_answer_passes_with_the_clients_body_sent_as_is(odd: Gateway) -> None:
    answered = _embed(odd, user="someone")
    assert answered.status_code == 200, answered.text
    assert [d["embedding"] for d in answered.json()["data"]] == [[0.5] * 4] * 2
    sent = {"model": MODEL, "input": ["a", "b"], "encoding_format": "float", "user": "someone"}
    assert odd.answer.received[-1] == sent
    record = httpx.get(f"{odd.server.v1}/requests/{answered.json()['request_id']}", headers=AUTH, timeout=10).json()
    assert record["node"] == "odd" and record["usage_source"] == "node" and record["receipt"] is None


def test_base64_vectors_pass(odd: Gateway) -> None:
    packed = base64.b64encode(b"\0\0\0?" * 4).decode()  # four 0.5s as float32 little-endian
    odd.answer.body = {**_vectors(2), "data": [{"index": i, "embedding": packed} for i in range(2)]}
    answered = _embed(odd, encoding_format="base64")
    assert answered.status_code == 200 and answered.json()["data"][1]["embedding"] == packed


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_vectors(1), "holds 1 embeddings for 2 inputs"),
        ({**_vectors(2), "data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}, "indexes"),
        ({**_vectors(2), "data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2]}]}, "length"),
        ({**_vectors(2), "data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1.0]}]}, "numbers"),
        ({**_vectors(2), "data": [{"index": 0, "embedding": [True]}, {"index": 1, "embedding": [1.0]}]}, "numbers"),
        ({**_vectors(2), "data": [{"index": 0, "embedding": "!!"}, {"index": 1, "embedding": [1.0]}]}, "base64"),
        ([1, 2], "not a JSON object"),
        ({**_vectors(2), "padding": "x" * (3 * 1024 * 1024)}, "an answer over"),
    ],
)
def test_a_wrong_answer_is_never_passed_on(odd: Gateway, body: Any, reason: str) -> None:
    odd.answer.body = body
    answered = _embed(odd)
    assert answered.status_code == 503, answered.text
    view = node_view(odd.server, "odd")
    assert view["state"] == "down" and reason in view["last_error"]


@pytest.mark.parametrize("usage", [None, {"prompt_tokens": -1}, {"prompt_tokens": 10**30}, {"prompt_tokens": 2.5}])
def test_impossible_or_missing_usage_is_counted_at_the_gateway(odd: Gateway, usage: object) -> None:
    odd.answer.body = {**_vectors(2), "usage": usage}
    answered = _embed(odd)
    assert answered.status_code == 200
    record = httpx.get(f"{odd.server.v1}/requests/{answered.json()['request_id']}", headers=AUTH, timeout=10).json()
    assert record["usage_source"] == "gateway" and record["usage"]["prompt_tokens"] == 2 * (1 + 4)
    assert node_view(odd.server, "odd")["state"] == ("up" if usage is None else "down")


def test_a_5xx_counts_against_the_node_and_a_4xx_is_the_clients(odd: Gateway) -> None:
    odd.answer.status, odd.answer.body = 400, {"error": {"message": "bad input", "param": "input", "type": "x"}}
    refused = _embed(odd)
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "bad input"
    assert node_view(odd.server, "odd")["state"] == "up"
    odd.answer.status = 500
    assert _embed(odd).status_code == 503
    assert node_view(odd.server, "odd")["last_error_class"] == "http_status"


def test_rerank_is_refused_by_name_where_no_node_serves_it(odd: Gateway) -> None:
    body = {"model": MODEL, "query": "q", "documents": ["a"]}
    refused = httpx.post(f"{odd.server.v1}/rerank", json=body, headers=AUTH, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"
    assert "rerank" in refused.json()["error"]["message"]
