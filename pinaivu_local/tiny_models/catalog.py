"""`serve --test-models`: the catalog's ids served by tiny generated models, for offline testing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pinaivu_local.catalog import Catalog, ModelKind, ModelSpec
from pinaivu_local.tiny_models.bert_writer import write_tiny_embedding_model, write_tiny_reranker
from pinaivu_local.tiny_models.writer import TinyShape, write_tiny_model

# Every other model is quantized, so the quantized kernels are exercised as well.
_VARIANTS = (("F16", TinyShape()), ("Q8_0", TinyShape(n_layer=3)))
# Their whole trained context: the tiny vocabulary spends about a token per byte, so the tools and
# instructions agent libraries send take several times the tokens a real model's would. Its KV cache
# is still a few MB.
TEST_MODEL_N_CTX = TinyShape().n_ctx_train
# What serves embeddings and rerank under --test-models when the catalog lists no such model (a tiny
# BERT each; the reranker's score is known in advance: tiny_models/bert_writer.py).
TEST_EMBED_ID = "test-embed"
TEST_RERANK_ID = "test-rerank"


def tiny_catalog(catalog: Catalog, directory: Path) -> Catalog:
    """The same ids, each pointing at a tiny model of its kind generated (once) under `directory`; plus
    `test-embed` and `test-rerank` where the catalog has no model of that kind, so every endpoint is served."""
    specs = []
    for i, spec in enumerate(catalog.models):
        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", spec.id)
        if spec.kind != "chat":
            path = directory / f"tiny-{safe_id}-{spec.kind}-s{i}.gguf"
            if not path.exists():
                _write_kind(path, spec.kind, seed=i)
            specs.append(_tiny_spec(spec, path))
            continue
        quant, shape = _VARIANTS[i % len(_VARIANTS)]
        path = directory / f"tiny-{safe_id}-{quant}-s{i}.gguf"
        if not path.exists():
            write_tiny_model(path, quant=quant, shape=shape, seed=i)
        specs.append(_tiny_spec(spec, path))
    extra: tuple[tuple[str, ModelKind], ...] = ((TEST_EMBED_ID, "embedding"), (TEST_RERANK_ID, "rerank"))
    for model_id, kind in extra:
        if all(s.kind != kind for s in specs) and all(s.id != model_id for s in specs):
            path = directory / f"{model_id}.gguf"
            if not path.exists():
                _write_kind(path, kind, seed=0)
            specs.append(ModelSpec(model_id, None, path, TEST_MODEL_N_CTX, 0, 1, test_model=True, kind=kind))
    return Catalog(file=catalog.file, models=tuple(specs))


def _tiny_spec(spec: ModelSpec, path: Path) -> ModelSpec:
    return dataclasses.replace(
        spec, source=None, file=path, n_ctx=min(spec.n_ctx, TEST_MODEL_N_CTX), n_gpu_layers=0, test_model=True
    )


def _write_kind(path: Path, kind: ModelKind, *, seed: int) -> None:
    """A tiny BERT embedding model or reranker (tiny_models/bert_writer.py)."""
    if kind == "rerank":
        write_tiny_reranker(path, seed=seed)
    else:
        write_tiny_embedding_model(path, seed=seed)
