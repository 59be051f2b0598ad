"""The embedder on real llama.cpp: tiny BERT embedding and rerank models, and a chat model's mean-pooled vectors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.engine.model_pool import EngineOptions, ModelPool
from pinaivu_local.errors import ContextLengthExceeded, InvalidRequest
from pinaivu_local.tiny_models.bert_writer import write_tiny_embedding_model, write_tiny_reranker
from tests.helpers import TinyModels


@pytest.fixture(scope="module")
def pool(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelPool]:
    folder = tmp_path_factory.mktemp("embed")
    specs = (
        ModelSpec(id="chat", source=None, file=tiny_models.f16, n_ctx=256, n_gpu_layers=0, parallel=2),
        ModelSpec(
            id="embed",
            source=None,
            file=write_tiny_embedding_model(folder / "embed.gguf"),
            n_ctx=128,
            n_gpu_layers=0,
            parallel=1,
            kind="embedding",
        ),
        ModelSpec(
            id="rerank",
            source=None,
            file=write_tiny_reranker(folder / "rerank.gguf"),
            n_ctx=128,
            n_gpu_layers=0,
            parallel=1,
            kind="rerank",
        ),
    )
    opened = ModelPool(Catalog(file=Path(folder / "models.toml"), models=specs), EngineOptions(1, 32, False))
    opened.open()
    yield opened
    opened.close()


def _embed(pool: ModelPool, model: str, texts: list[str]) -> list[np.ndarray]:
    embedder = pool.get(model).embedder()
    vectors, _job = asyncio.run(embedder.run(embedder.tokenize(texts, "input")))
    return vectors


@pytest.mark.parametrize("model", ["embed", "chat"])
def test_a_batch_equals_one_by_one_and_each_vector_has_unit_norm(pool: ModelPool, model: str) -> None:
    texts = [f"hello world {i} " + "the quick brown fox " * (i % 5) for i in range(64)]
    together = _embed(pool, model, texts)
    alone = [_embed(pool, model, [text])[0] for text in texts[:8]]
    assert len(together) == 64
    for a, b in zip(together, alone, strict=False):
        assert np.allclose(a, b, atol=1e-3)
    assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in together)
    assert not np.allclose(together[0], together[1])  # different inputs, different vectors


def test_many_requests_share_steps(pool: ModelPool) -> None:
    embedder = pool.get("embed").embedder()
    inputs = [embedder.tokenize([f"request {i}"], "input") for i in range(16)]

    async def all_at_once() -> list[list[np.ndarray]]:
        return [vectors for vectors, _ in await asyncio.gather(*(embedder.run(x) for x in inputs))]

    before = embedder.steps
    results = asyncio.run(all_at_once())
    assert embedder.steps - before < 16  # sixteen requests, fewer decodes: they were batched together
    for x, got in zip(inputs, results, strict=True):
        assert np.allclose(got[0], asyncio.run(embedder.run(x))[0][0], atol=1e-3)


def test_the_reranker_scores_the_share_of_digit_tokens(pool: ModelPool) -> None:
    embedder = pool.get("rerank").embedder()
    documents = ["the lazy dog", "1 2 3", "12345", "hello 7"]
    pairs = embedder.pair_tokens("numbers", documents)
    scores, _ = asyncio.run(embedder.run(pairs))
    engine = pool.get("rerank")
    for pair, score in zip(pairs, scores, strict=True):
        digits = sum(1 for t in pair if engine._model.token_text(t) in set("0123456789"))
        assert float(score[0]) == pytest.approx(2 * digits / len(pair) - 1, abs=1e-4)
    assert np.argsort([-float(s[0]) for s in scores]).tolist() == [2, 1, 3, 0]


def test_an_input_past_the_limit_is_refused_by_index(pool: ModelPool) -> None:
    embedder = pool.get("embed").embedder()
    with pytest.raises(ContextLengthExceeded) as caught:
        embedder.tokenize(["short", "the quick brown fox " * 100], "input")
    assert "input[1]" in caught.value.message and "never truncated" in caught.value.message
    with pytest.raises(InvalidRequest, match=r"input\[0\] has token id 99999"):
        embedder.check([[99999]], "input")
    with pytest.raises(InvalidRequest, match=r"input\[1\] is empty"):
        embedder.check([[1], []], "input")


def test_each_kind_serves_only_its_endpoints(pool: ModelPool) -> None:
    with pytest.raises(InvalidRequest, match="embedding model: it serves /v1/embeddings"):
        _ = pool.get("embed").chat
    with pytest.raises(InvalidRequest, match="rerank model: it serves /v1/rerank"):
        _ = pool.get("rerank").chat
    assert pool.get("rerank").embedder().pooling == "rank"
    assert pool.get("chat").embedder().pooling == "mean"
    assert pool.get("embed").embedder().pooling == "mean"  # from the GGUF
    assert [s.state for s in pool.statuses()] == ["ready", "ready", "ready"]
