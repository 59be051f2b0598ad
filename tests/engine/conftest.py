"""The engine tests' shared pool: the tiny model (eight sequences) and the slow one, opened once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.engine.model_pool import EngineOptions, ModelPool
from tests.helpers import TinyModels


@pytest.fixture(scope="module")
def pool(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelPool]:
    spec = ModelSpec(id="tiny", source=None, file=tiny_models.f16, n_ctx=1024, n_gpu_layers=0, parallel=8)
    slow = ModelSpec(id="slow", source=None, file=tiny_models.slow, n_ctx=2048, n_gpu_layers=0, parallel=1)
    opened = ModelPool(
        Catalog(file=tmp_path_factory.mktemp("c") / "models.toml", models=(spec, slow)),
        EngineOptions(n_threads=1, max_queue=1, weight_repack=False),
    )
    opened.open()
    yield opened
    opened.close()
