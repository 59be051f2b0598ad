"""An in-process app (Litestar's TestClient): fast HTTP tests that can reach inside the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from pinaivu_local.api.app import create_app
from pinaivu_local.catalog import load_catalog
from pinaivu_local.keys.bootstrap import ensure_admin_key
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.settings import Settings
from pinaivu_local.storage.database import Database
from pinaivu_local.tiny_models.bert_writer import write_tiny_reranker
from tests.helpers import TEST_KEY, TinyModels, write_catalog


@pytest.fixture
def app_client(tmp_path: Path, tiny_models: TinyModels) -> Iterator[TestClient[Litestar]]:
    """The real app with both tiny models and a tiny reranker, its lifespan run; requests carry the admin key."""
    catalog_file = write_catalog(
        tmp_path / "models.toml",
        {
            "llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512, "parallel": 2},
            "llama3.2:3b": {"path": str(tiny_models.q8), "n_ctx": 512, "parallel": 2},
            # a tiny reranker (milliseconds to write), for /v1/rerank
            "test-rerank": {"path": str(write_tiny_reranker(tmp_path / "rerank.gguf")), "kind": "rerank"},
        },
    )
    settings = Settings(data_dir=tmp_path / "data", models_file=catalog_file, threads=1, max_queue=4)
    database = Database(settings.database)
    try:
        ensure_admin_key(KeyStore(database), TEST_KEY)
    finally:
        database.close()
    app = create_app(settings, load_catalog(catalog_file, settings.models_dir))
    with TestClient(app, base_url="http://127.0.0.1", timeout=60) as client:
        client.headers["authorization"] = f"Bearer {TEST_KEY}"
        yield client
