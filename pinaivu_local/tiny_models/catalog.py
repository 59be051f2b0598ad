"""`serve --test-models`: the catalog's ids served by tiny generated models, for offline testing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pinaivu_local.catalog import Catalog
from pinaivu_local.tiny_models.writer import TinyShape, write_tiny_model

# Every other model is quantized, so the quantized kernels are exercised as well.
_VARIANTS = (("F16", TinyShape()), ("Q8_0", TinyShape(n_layer=3)))
# Their whole trained context: the tiny vocabulary spends about a token per byte, so the tools and
# instructions agent libraries send take several times the tokens a real model's would. Its KV cache
# is still a few MB.
TEST_MODEL_N_CTX = TinyShape().n_ctx_train


def tiny_catalog(catalog: Catalog, directory: Path) -> Catalog:
    """The same ids, each pointing at a tiny model generated (once) under `directory`."""
    specs = []
    for i, spec in enumerate(catalog.models):
        quant, shape = _VARIANTS[i % len(_VARIANTS)]
        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", spec.id)
        path = directory / f"tiny-{safe_id}-{quant}-s{i}.gguf"
        if not path.exists():
            write_tiny_model(path, quant=quant, shape=shape, seed=i)
        specs.append(
            dataclasses.replace(
                spec, source=None, file=path, n_ctx=min(spec.n_ctx, TEST_MODEL_N_CTX), n_gpu_layers=0, test_model=True
            )
        )
    return Catalog(file=catalog.file, models=tuple(specs))
