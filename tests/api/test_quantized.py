"""Quantized models (Q4_0 repacks on AVX2 CPUs, Q8_0) serve with default settings, no crash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai

from tests.helpers import NO_EOG, TEST_KEY, RunningServer, TinyModels, write_catalog


def test_quantized_models_generate(
    server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path
) -> None:
    catalog = write_catalog(
        tmp_path / "models.toml",
        {"q4": {"path": str(tiny_models.q4), "n_ctx": 256}, "q8": {"path": str(tiny_models.q8), "n_ctx": 256}},
    )
    server = server_factory("--models-file", str(catalog))  # weight_repack=auto
    client = openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0)
    for model in ("q4", "q8"):
        out = client.completions.create(model=model, prompt="hello", max_tokens=12, logit_bias=NO_EOG)
        assert out.usage is not None and out.usage.completion_tokens == 12
    assert server.process.poll() is None
