"""/metrics as operators chart it: time per output token, queue time, KV cache usage, the prefix cache,
per model and (on a gateway) per node; scraped after real requests over real HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import NO_EOG, TEST_KEY, RunningServer, TinyModels, start_server, write_catalog


def scrape(server: RunningServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """One model with room for a long generation (the slow tiny model) and every prefix it is sent."""
    workdir = tmp_path_factory.mktemp("metrics")
    catalog = write_catalog(
        workdir / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.slow), "n_ctx": 4096, "parallel": 2}}
    )
    running = start_server(workdir, "--models-file", str(catalog))
    yield running
    running.stop()


def chat(server: RunningServer, system: str, user: str, max_tokens: int = 5, **extra: Any) -> Any:
    client = openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0, timeout=60)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return client.chat.completions.create(
        model="llama3.2:1b",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=0,
        extra_body={"logit_bias": NO_EOG},
        **extra,
    )


def test_latency_and_prefix_cache_after_real_requests(box: RunningServer) -> None:
    model = {"model": "llama3.2:1b", "node": "local"}
    before = scrape(box)
    system = f"{uuid.uuid4().hex} You are a careful assistant that answers in one short sentence."
    first = chat(box, system, "first question").usage
    second = chat(box, system, "second question").usage
    after = scrape(box)

    def moved(name: str) -> float:
        return value(after, name, **model) - value(before, name, **model)

    assert moved("pinaivu_time_per_output_token_seconds_count") == 2  # 5 tokens each: 4 intervals to average
    assert moved("pinaivu_time_per_output_token_seconds_sum") > 0
    assert moved("pinaivu_queue_time_seconds_count") == 2
    assert moved("pinaivu_prefix_cache_queries_total") == 2
    assert moved("pinaivu_prefix_cache_hits_total") == 1  # the second began with the first's system prompt
    cached = second.prompt_tokens_details.cached_tokens
    assert cached > 0 and first.prompt_tokens_details.cached_tokens == 0
    assert moved("pinaivu_prefix_cache_cached_tokens_total") == cached
    assert moved("pinaivu_prefix_cache_queried_tokens_total") == first.prompt_tokens + second.prompt_tokens
    # Both latency histograms' buckets are cumulative: the last (+Inf) holds every observation.
    assert value(after, "pinaivu_queue_time_seconds_bucket", le="+Inf", **model) == value(
        after, "pinaivu_queue_time_seconds_count", **model
    )


def test_kv_cache_usage_while_a_generation_runs(box: RunningServer) -> None:
    assert value(scrape(box), "pinaivu_kv_cache_usage_ratio", model="llama3.2:1b") == 0  # nothing running
    stream = chat(box, "Count.", "Go on for a long time.", max_tokens=3000, stream=True)
    try:
        next(iter(stream))  # its prompt is in the cache, its tokens are being added
        running = value(scrape(box), "pinaivu_kv_cache_usage_ratio", model="llama3.2:1b")
        assert 0 < running < 1
    finally:
        stream.close()
    deadline = time.monotonic() + 30  # the server notices the closed stream at its next chunk
    while value(scrape(box), "pinaivu_kv_cache_usage_ratio", model="llama3.2:1b") != 0:
        assert time.monotonic() < deadline, "the cancelled generation's cells were never released"
        time.sleep(0.1)


def test_a_gateway_labels_each_node(tmp_path: Path, tiny_models: TinyModels) -> None:
    catalog = write_catalog(
        tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 1024, "parallel": 2}}
    )
    (tmp_path / "node").mkdir()
    (tmp_path / "gw").mkdir()
    node = start_server(tmp_path / "node", "--models-file", str(catalog))
    try:
        listed = tmp_path / "nodes.toml"
        listed.write_text(f'[nodes.edge1]\nurl = "{node.base_url}"\napi_key_env = "NODE_KEY"\n')
        env = {"PINAIVU_NODE_POLL_S": "0.5", "NODE_KEY": TEST_KEY}
        gateway = start_server(tmp_path / "gw", "--nodes", str(listed), "--no-local", env=env)
        try:
            deadline = time.monotonic() + 30
            while (
                not httpx.get(f"{gateway.v1}/models", headers={"authorization": f"Bearer {TEST_KEY}"})
                .json()
                .get("data")
            ):
                assert time.monotonic() < deadline, "the gateway never saw its node up"
                time.sleep(0.1)
            chat(gateway, "Be brief.", "hello")
            at_gateway = scrape(gateway)
            edge = {"model": "llama3.2:1b", "node": "edge1"}
            assert value(at_gateway, "pinaivu_time_per_output_token_seconds_count", **edge) == 1
            assert value(at_gateway, "pinaivu_queue_time_seconds_count", **edge) == 1
            assert value(at_gateway, "pinaivu_prefix_cache_queries_total", **edge) == 1
            assert value(scrape(node), "pinaivu_time_per_output_token_seconds_count", model="llama3.2:1b", node="local")
        finally:
            gateway.stop()
    finally:
        node.stop()
