"""POST /v1/embeddings and /v1/rerank over real HTTP on `serve --test-models` with the shipped catalog.

The real openai SDK asks for base64 by default and decodes it itself; the tiny reranker's score is known
in advance (2 * digit tokens / tokens - 1 of the pair: tiny_models/bert_writer.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.helpers import AUTH, TEST_KEY, RunningServer, start_server

SHIPPED = Path(__file__).parents[2] / "models.toml"
EMBED = "nomic-embed-text:v1.5"  # a tiny BERT embedding model under --test-models
CHAT = "llama3.2:1b"
RERANK = "test-rerank"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("embeddings")
    running = start_server(workdir, "--test-models", "--models-file", str(SHIPPED))
    yield running
    running.stop()


@pytest.fixture
def client(served: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.v1, api_key=TEST_KEY, max_retries=0, timeout=60)


def _key(served: RunningServer, **fields: object) -> openai.OpenAI:
    response = httpx.post(f"{served.base_url}/admin/keys", json={"name": "t", **fields}, headers=AUTH, timeout=10)
    assert response.status_code in (200, 201), response.text
    return openai.OpenAI(base_url=served.v1, api_key=response.json()["key"], max_retries=0, timeout=60)


def test_float_and_the_sdks_default_base64_agree(client: openai.OpenAI) -> None:
    as_base64 = client.embeddings.create(model=EMBED, input="hello world")  # the SDK asks for base64
    as_float = client.embeddings.create(model=EMBED, input="hello world", encoding_format="float")
    assert as_base64.model == EMBED and as_base64.object == "list"
    assert np.allclose(as_base64.data[0].embedding, as_float.data[0].embedding, atol=1e-6)
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens > 0
    raw = client.embeddings.with_raw_response.create(model=EMBED, input="hello world", encoding_format="float")
    body = json.loads(raw.text)
    assert body["request_id"] == raw.headers["x-request-id"] and body["request_id"].startswith("req_")


@pytest.mark.parametrize("model", [EMBED, CHAT])
def test_a_batch_of_64_equals_one_by_one_with_unit_norm(client: openai.OpenAI, model: str) -> None:
    texts = [f"request {i}: " + "the quick brown fox " * (i % 7) for i in range(64)]
    batch = client.embeddings.create(model=model, input=texts)
    assert [d.index for d in batch.data] == list(range(64))
    for i in (0, 1, 13, 63):
        alone = client.embeddings.create(model=model, input=texts[i]).data[0].embedding
        assert np.allclose(batch.data[i].embedding, alone, atol=1e-3)
    for d in batch.data:
        assert float(np.linalg.norm(d.embedding)) == pytest.approx(1.0, abs=1e-5)


def test_token_id_inputs(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model=EMBED, input=[104, 101, 108, 108, 111])
    many = client.embeddings.create(model=EMBED, input=[[104, 101, 108, 108, 111], [119, 111]])
    assert np.allclose(one.data[0].embedding, many.data[0].embedding, atol=1e-3)
    assert one.usage.prompt_tokens == 5 and many.usage.prompt_tokens == 7
    with pytest.raises(openai.BadRequestError, match=r"input\[1\] has token id 999999"):
        client.embeddings.create(model=EMBED, input=[[1, 2], [999999]])


def test_an_input_past_the_context_is_a_400_naming_its_index(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=EMBED, input=["short", "fine", "the quick brown fox " * 300])
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert "input[2]" in error["message"] and "never truncated" in error["message"]


def test_dimensions_where_the_model_is_matryoshka_and_refused_by_name_elsewhere(client: openai.OpenAI) -> None:
    full = client.embeddings.create(model=EMBED, input="hello", encoding_format="float").data[0].embedding
    cut = client.embeddings.create(model=EMBED, input="hello", dimensions=16, encoding_format="float").data[0]
    assert len(cut.embedding) == 16 and float(np.linalg.norm(cut.embedding)) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(cut.embedding, np.array(full[:16]) / np.linalg.norm(full[:16]), atol=1e-5)
    with pytest.raises(openai.BadRequestError, match="dimensions is not supported") as caught:
        client.embeddings.create(model=CHAT, input="hello", dimensions=16)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "dimensions"


def test_rerank_orders_by_the_known_score(served: RunningServer) -> None:
    documents = ["the lazy dog", "1 2 3", "12345", "hello 7"]
    response = httpx.post(
        f"{served.v1}/rerank",
        headers=AUTH,
        json={"model": RERANK, "query": "numbers", "documents": documents, "top_n": 3},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["index"] for r in body["results"]] == [2, 1, 3]
    assert body["results"][0]["document"] == {"text": "12345"}
    # BOS, "numbers" (its tokens), EOS, the document, EOS: the digits' share of the pair, mapped to [-1, 1]
    tokens = body["usage"]["prompt_tokens"]
    assert tokens > 0 and body["request_id"] == response.headers["x-request-id"]
    plain = httpx.post(
        f"{served.v1}/rerank",
        headers=AUTH,
        json={"model": RERANK, "query": "numbers", "documents": ["12345"], "return_documents": False},
        timeout=30,
    ).json()
    n_pair = plain["usage"]["prompt_tokens"]
    assert plain["results"] == [{"index": 0, "relevance_score": pytest.approx(2 * 5 / n_pair - 1, abs=1e-4)}]


def test_each_model_serves_only_what_it_can(served: RunningServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="rerank model"):
        client.embeddings.create(model=RERANK, input="hello")
    with pytest.raises(openai.BadRequestError, match="embedding model: it serves /v1/embeddings"):
        client.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "hi"}])
    refused = httpx.post(
        f"{served.v1}/rerank", headers=AUTH, json={"model": EMBED, "query": "q", "documents": ["d"]}, timeout=30
    )
    assert refused.status_code == 400 and "not a rerank model" in refused.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nomic-embed-txt", input="hello")
    unknown = httpx.post(f"{served.v1}/embeddings", headers=AUTH, json={"model": EMBED, "input": "x", "typo": 1})
    assert unknown.status_code == 422
    empty = httpx.post(f"{served.v1}/embeddings", headers=AUTH, json={"model": EMBED, "input": ["a", ""]})
    assert empty.status_code == 400 and "input[1]" in empty.json()["error"]["message"]


def test_permissions_and_limits(served: RunningServer) -> None:
    only_chat = _key(served, models=[CHAT])
    assert only_chat.embeddings.create(model=CHAT, input="hello").data
    with pytest.raises(openai.PermissionDeniedError):
        only_chat.embeddings.create(model=EMBED, input="hello")
    few_tokens = _key(served, tpm=20)
    assert few_tokens.embeddings.create(model=EMBED, input="hi").data
    with pytest.raises(openai.RateLimitError) as caught:
        few_tokens.embeddings.create(model=EMBED, input="the quick brown fox jumps over the lazy dog " * 3)
    assert caught.value.response.headers["x-should-retry"] == "false"  # more than the whole limit
    one_request = _key(served, rpm=1)
    one_request.embeddings.create(model=EMBED, input="hi")
    with pytest.raises(openai.RateLimitError, match="requests"):
        one_request.embeddings.create(model=EMBED, input="hi")


def test_the_record_commits_to_input_and_vectors_and_the_receipt_verifies(
    served: RunningServer, client: openai.OpenAI
) -> None:
    texts = ["hello world", "1 2 3"]
    raw = client.embeddings.with_raw_response.create(model=EMBED, input=texts)  # base64 on the wire
    body = json.loads(raw.text)
    vectors = b"".join(base64.b64decode(d["embedding"]) for d in body["data"])
    record = httpx.get(f"{served.v1}/requests/{body['request_id']}", headers=AUTH, timeout=10).json()
    assert (record["kind"], record["model"], record["status"]) == ("embedding", EMBED, 200)
    assert record["usage"]["prompt_tokens"] == body["usage"]["prompt_tokens"]
    canonical = json.dumps(texts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert record["commitment"]["input_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert record["commitment"]["output_sha256"] == hashlib.sha256(vectors).hexdigest()
    receipt = json.loads(raw.headers["x-pinaivu-receipt"])
    assert receipt == record["receipt"]
    assert receipt["receipt"]["kind"] == "embedding"
    assert receipt["receipt"]["output_sha256"] == hashlib.sha256(vectors).hexdigest()
    verdict = httpx.post(f"{served.v1}/receipts/verify", headers=AUTH, json=receipt, timeout=10).json()
    assert verdict["valid"] is True

    reranked = httpx.post(
        f"{served.v1}/rerank", headers=AUTH, json={"model": RERANK, "query": "q", "documents": ["a", "1"]}, timeout=30
    )
    kept = httpx.get(f"{served.v1}/requests/{reranked.json()['request_id']}", headers=AUTH, timeout=10).json()
    assert kept["kind"] == "rerank" and kept["receipt"]["receipt"]["kind"] == "rerank"
    scores = sorted(reranked.json()["results"], key=lambda r: r["index"])
    packed = np.array([r["relevance_score"] for r in scores], dtype="<f4").tobytes()
    assert kept["commitment"]["output_sha256"] == hashlib.sha256(packed).hexdigest()


def test_the_access_log_line_carries_the_request_id_and_tokens(served: RunningServer, client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model=EMBED, input=["log me"], encoding_format="float")
    reranked = httpx.post(
        f"{served.v1}/rerank", headers=AUTH, json={"model": RERANK, "query": "q", "documents": ["d"]}, timeout=60
    )
    for path, request_id in (
        ("/v1/embeddings", raw.headers["x-request-id"]),
        ("/v1/rerank", reranked.json()["request_id"]),
    ):
        line = next(line for line in served.log().splitlines() if f"request_id={request_id}" in line)
        assert f"path={path}" in line and "status=200" in line and "tokens=" in line
